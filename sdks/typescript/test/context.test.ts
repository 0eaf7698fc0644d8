import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareClocks, Raceway, recordedUrl, type RacewayEvent } from '../src/index.js';
import { batchValidator, sleep } from './helpers2.js';

function capture(extra: object = {}) {
  const events: RacewayEvent[] = [];
  const rw = new Raceway({ serviceName: 'ctx', instanceId: 'i-1', onEvent: (e) => events.push(e), ...extra });
  return { rw, events };
}

describe('context, forks and tracking API', () => {
  it('nested forks get <span>.<n>.<m> thread ids, own seq and clock copies; joins merge', async () => {
    const { rw, events } = capture();
    let root = '';
    await rw.runInTrace('job', async () => {
      root = rw.currentContext()!.threadId;
      await rw.fork(async () => {
        rw.trackCustom('in child');
        const inner = await rw.all([
          async () => {
            await sleep(5);
            return rw.currentContext()!.threadId;
          },
          () => rw.currentContext()!.threadId,
        ]);
        assert.deepEqual(inner, [`${root}.1.1`, `${root}.1.2`]);
      });
      const second = await rw.fork(() => rw.currentContext()!.threadId);
      assert.equal(second, `${root}.2`);
    });
    const byThread = new Map<string, RacewayEvent[]>();
    for (const e of events) byThread.set(e.thread_id, [...(byThread.get(e.thread_id) ?? []), e]);
    for (const [, evs] of byThread) assert.deepEqual(evs.map((e) => e.seq), evs.map((_, i) => i));
    const child = byThread.get(`${root}.1`)!;
    assert.deepEqual(child.map((e) => e.kind.type), ['custom', 'async_spawn', 'async_spawn', 'async_await', 'async_await']);
    const main = byThread.get(root)!;
    assert.deepEqual(main.map((e) => e.kind.type), ['span_start', 'async_spawn', 'async_await', 'async_spawn', 'async_await', 'span_end']);
    // child's last event happens-before the parent's async_await
    assert.equal(compareClocks(child.at(-1)!.vector_clock, main[2]!.vector_clock), 'before');
    const v = batchValidator()({ events });
    assert.ok(v.ok, v.errors);
  });

  it('concurrent tasks never share mutable state', async () => {
    const { rw } = capture();
    await rw.runInTrace('job', async () => {
      const results = await rw.all(
        Array.from({ length: 8 }, (_, i) => async () => {
          for (let j = 0; j < 20; j++) {
            rw.trackStateChange(`v:${i}`, 'write', { newValue: j });
            await sleep(Math.random() * 2);
          }
          return rw.currentContext()!;
        }),
      );
      for (const c of results) assert.equal(c.seq, 20);
      assert.equal(new Set(results.map((c) => c.threadId)).size, 8);
    });
  });

  it('tracked mutex serialises holders and records locks_held', async () => {
    const { rw, events } = capture();
    const m = rw.mutex('account:42');
    let inside = 0;
    let maxInside = 0;
    await rw.runInTrace('job', () =>
      rw.all(
        [1, 2, 3].map(() => () =>
          m.withLock(async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            await sleep(3);
            rw.trackWrite('account:42', 1, 2);
            inside--;
          }),
        ),
      ),
    );
    assert.equal(maxInside, 1);
    const writes = events.filter((e) => e.kind.type === 'state_change');
    for (const w of writes) assert.deepEqual(w.locks_held, [{ lock: 'account:42', mode: 'exclusive' }]);
    assert.equal(events.filter((e) => e.kind.type === 'lock_acquire').length, 3);
    const afterRelease = events.filter((e) => e.kind.type === 'async_await');
    for (const e of afterRelease) assert.deepEqual(e.locks_held, []);
  });

  it('tracking API records every kind with location, durations and valid schema', async () => {
    const { rw, events } = capture();
    await rw.runInTrace('job', async () => {
      rw.trackStateChange('cache:x', 'atomic_rmw', { oldValue: { a: 1 }, newValue: null });
      rw.trackRead('cache:x', 5);
      const slow = rw.trackFunction(async (n: number) => {
        await sleep(5);
        return n * 2;
      }, { name: 'double', module: 'math' });
      assert.equal(await slow(2), 4);
      const boom = rw.trackFunction(() => {
        throw new TypeError('bad');
      });
      assert.throws(() => boom(), TypeError);
      rw.trackError(new RangeError('out of range'));
      rw.trackCustom('checkpoint', { step: 3 });
      rw.trackLockAcquire('db:row:1', 'shared');
      rw.trackLockRelease('db:row:1', 'shared');
    });
    const kinds = events.map((e) => e.kind.type);
    assert.deepEqual(kinds, [
      'span_start', 'state_change', 'state_change', 'function_call', 'function_call', 'error', 'custom',
      'lock_acquire', 'lock_release', 'span_end',
    ]);
    const fc = events[3]!;
    assert.ok(fc.kind.type === 'function_call' && fc.kind.function === 'double' && fc.kind.module === 'math');
    assert.ok(fc.duration_ns! >= 4_000_000, `duration ${fc.duration_ns}`);
    for (const e of events.slice(1, -1)) assert.match(e.location ?? '', /context\.test\.ts:\d+:\d+$/);
    assert.deepEqual(events[7]!.locks_held, [{ lock: 'db:row:1', mode: 'shared' }]);
    assert.deepEqual(events[8]!.locks_held, [{ lock: 'db:row:1', mode: 'shared' }]);
    assert.deepEqual(events[9]!.locks_held, []);
    const err = events[5]!.kind;
    assert.ok(err.type === 'error' && err.error_type === 'RangeError' && err.message === 'out of range');
    // vector clocks strictly increase along the thread
    for (let i = 1; i < events.length; i++) {
      assert.equal(compareClocks(events[i - 1]!.vector_clock, events[i]!.vector_clock), 'before');
    }
    const v = batchValidator()({ events });
    assert.ok(v.ok, v.errors);
  });

  it('the propagated clock is bounded to maxClockComponents, keeping the own component', async () => {
    const { rw } = capture({ maxClockComponents: 4 });
    const http = await import('node:http');
    const { listen, close } = await import('./helpers2.js');
    const { encodeClock } = await import('../src/index.js');
    const srv = http.createServer(rw.wrapHandler((_req, res) => res.end(JSON.stringify(rw.currentContext()))));
    const url = await listen(srv);
    const clock: Array<[string, number]> = Array.from({ length: 10 }, (_, i) => [`svc${i}#1`, i + 1]);
    const res = await fetch(url, {
      headers: {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        'raceway-clock': encodeClock({
          trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736', span_id: '00f067aa0ba902b7', parent_span_id: null,
          service: 'up', instance: 'u', clock, flags: [],
        }),
      },
    });
    const ctx = (await res.json()) as any;
    await close(srv);
    assert.equal(ctx.clock.length, 4);
    assert.ok(ctx.clock.some(([k]: [string]) => k === 'ctx#i-1'));
    // all merged at the same instant -> smallest counters dropped first
    assert.deepEqual(ctx.clock.map(([k]: [string]) => k), ['ctx#i-1', 'svc7#1', 'svc8#1', 'svc9#1']);
    assert.ok(rw.stats().clock_components_dropped >= 7);
  });
});

describe('client calls outside any context', () => {
  it('start a new trace with an internal root span and record a sanitised url', async () => {
    const http = await import('node:http');
    const { listen, close } = await import('./helpers2.js');
    const seen: string[] = [];
    const srv = http.createServer((req, res) => {
      seen.push(String(req.headers.traceparent));
      res.end('ok');
    });
    const url = await listen(srv);
    const { rw, events } = capture();
    await (await rw.fetch(`${url}/path?token=abc#frag`)).text();
    await close(srv);
    assert.match(seen[0]!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-03$/);
    assert.deepEqual(events.map((e) => e.kind.type), ['span_start', 'outbound_call', 'outbound_response', 'span_end']);
    const start = events[0]!.kind;
    assert.ok(start.type === 'span_start' && start.operation === 'HTTP GET' && start.span_kind === 'internal');
    const call = events[1]!.kind;
    assert.ok(call.type === 'outbound_call');
    assert.equal(call.url, `${url}/path`);
    assert.equal(new Set(events.map((e) => e.trace_id)).size, 1);
    const v = batchValidator()({ events });
    assert.ok(v.ok, v.errors);
    assert.equal(recordedUrl('https://u:p@example.test:8443/a/b?q=1#x'), 'https://example.test:8443/a/b');
    assert.equal(recordedUrl('not a url?x=1'), 'not a url');
  });
});
