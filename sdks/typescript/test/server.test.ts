import assert from 'node:assert/strict';
import http, { type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import axios from 'axios';
import express from 'express';
import {
  compareClocks,
  decodeClock,
  encodeClock,
  Raceway,
  type RacewayEvent,
} from '../src/index.js';
import { batchValidator, close, FakeBackend, listen, waitFor } from './helpers2.js';
import { loadVectors } from './helpers.js';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('express middleware + fetch/axios propagation (real loopback servers)', () => {
  const backend = new FakeBackend();
  let gateway: Raceway;
  let checkout: Raceway;
  let gwServer: Server;
  let coServer: Server;
  let gwUrl = '';
  let coUrl = '';
  const gwEvents: RacewayEvent[] = [];
  const coEvents: RacewayEvent[] = [];
  const received: Array<Record<string, string | undefined>> = [];
  const validate = batchValidator();

  before(async () => {
    const endpoint = await backend.start();
    checkout = new Raceway({
      serviceName: 'checkout',
      instanceId: 'checkout-1',
      endpoint,
      flushIntervalMs: 20,
      onEvent: (e) => coEvents.push(e),
    });
    gateway = new Raceway({
      serviceName: 'gateway',
      instanceId: 'gw-1',
      endpoint,
      flushIntervalMs: 20,
      onEvent: (e) => gwEvents.push(e),
    });

    const co = express();
    co.use(checkout.middleware());
    co.get('/items/:id', async (req, res) => {
      received.push({
        traceparent: req.headers.traceparent as string | undefined,
        tracestate: req.headers.tracestate as string | undefined,
        clock: req.headers['raceway-clock'] as string | undefined,
      });
      checkout.trackStateChange(`item:${req.params.id}`, 'read', { newValue: 3 });
      const mutex = checkout.mutex(`item:${req.params.id}`);
      const [a, b] = await checkout.all([
        () => mutex.withLock(async () => {
          checkout.trackWrite(`item:${req.params.id}`, 3, 2);
          return checkout.currentContext()!.threadId;
        }),
        () => mutex.withLock(async () => {
          checkout.trackWrite(`item:${req.params.id}`, 2, 1);
          return checkout.currentContext()!.threadId;
        }),
      ]);
      res.json({ ctx: checkout.currentContext(), threads: [a, b] });
    });
    co.get('/fail', (_req, res) => {
      res.status(503).send('nope');
    });
    coServer = http.createServer(co);
    coUrl = await listen(coServer);

    const ax = gateway.instrumentAxios(axios.create());
    const gw = express();
    gw.use(gateway.middleware());
    gw.get('/buy', async (_req, res) => {
      const r1 = await gateway.fetch(`${coUrl}/items/1`);
      const j1 = await r1.json();
      const r2 = await ax.get(`${coUrl}/items/2`);
      const add = gateway.trackFunction(function add(a: number, b: number) {
        return a + b;
      });
      add(1, 2);
      res.json({ ctx: gateway.currentContext(), one: j1, two: r2.data });
    });
    gw.get('/downstream-error', async (_req, res) => {
      const r = await gateway.fetch(`${coUrl}/fail`);
      let axiosStatus = 0;
      try {
        await ax.get(`${coUrl}/fail`);
      } catch (e: any) {
        axiosStatus = e.response?.status ?? -1;
      }
      try {
        await gateway.fetch('http://127.0.0.1:1/closed');
      } catch {
        /* connection refused */
      }
      res.json({ status: r.status, axiosStatus });
    });
    const gwHttp = http.createServer(gw);
    gwUrl = await listen(gwHttp);
    gwServer = gwHttp;
  });

  after(async () => {
    await gateway.shutdown(2000);
    await checkout.shutdown(2000);
    await close(gwServer);
    await close(coServer);
    await backend.stop();
  });

  it('continues an incoming trace, propagates to checkout and answers with raceway-clock', async () => {
    gwEvents.length = 0;
    coEvents.length = 0;
    received.length = 0;
    const res = await fetch(`${gwUrl}/buy?x=1`, { headers: { traceparent: TP, tracestate: 'rojo=1' } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as any;
    const ctx = body.ctx;
    assert.equal(ctx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(ctx.parentSpanId, '00f067aa0ba902b7');
    assert.notEqual(ctx.spanId, '00f067aa0ba902b7');
    assert.match(ctx.spanId, /^[0-9a-f]{16}$/);
    assert.equal(ctx.threadId, ctx.spanId);

    // Response header: final clock of the gateway span.
    const header = res.headers.get('raceway-clock');
    assert.ok(header);
    const decoded = decodeClock(header!);
    assert.ok(decoded.ok);
    if (!decoded.ok) return;
    assert.equal(decoded.payload.trace_id, '4bf92f35-77b3-4da6-a3ce-929d0e0e4736');
    assert.equal(decoded.payload.span_id, ctx.spanId);
    assert.equal(decoded.payload.parent_span_id, '00f067aa0ba902b7');
    assert.equal(decoded.payload.service, 'gateway');

    // What checkout received: fresh child span per call, tracestate mutated, clock ok.
    assert.equal(received.length, 2);
    const children = new Set<string>();
    for (const r of received) {
      const m = /^00-4bf92f3577b34da6a3ce929d0e0e4736-([0-9a-f]{16})-01$/.exec(r.traceparent ?? '');
      assert.ok(m, r.traceparent);
      children.add(m[1]!);
      assert.equal(r.tracestate, `raceway=${m[1]},rojo=1`);
      const c = decodeClock(r.clock!);
      assert.ok(c.ok);
      if (c.ok) {
        assert.equal(c.payload.span_id, m[1]);
        assert.equal(c.payload.parent_span_id, ctx.spanId);
        assert.equal(c.payload.service, 'gateway');
        assert.equal(c.payload.instance, 'gw-1');
      }
    }
    assert.equal(children.size, 2, 'distinct child span id per call');

    // Checkout's view: continued trace, parent = the gateway's outbound child span, forked threads.
    for (const [i, one] of [body.one, body.two].entries()) {
      assert.equal(one.ctx.traceId, ctx.traceId);
      assert.ok(children.has(one.ctx.parentSpanId));
      assert.deepEqual(one.threads, [`${one.ctx.spanId}.${1 + 0}`, `${one.ctx.spanId}.2`], `call ${i}`);
    }

    // Events: program order per thread, clocks after ticks, happens-before edges consistent with clocks.
    await waitFor(() => gwEvents.some((e) => e.kind.type === 'span_end') && coEvents.filter((e) => e.kind.type === 'span_end').length === 2);
    const byThread = new Map<string, RacewayEvent[]>();
    for (const e of [...gwEvents, ...coEvents]) {
      const k = `${e.service}/${e.thread_id}`;
      byThread.set(k, [...(byThread.get(k) ?? []), e]);
    }
    for (const [k, evs] of byThread) {
      const seqs = evs.map((e) => e.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, seqs.map((_, i) => i), `seq of ${k}`);
    }
    const gwMain = gwEvents.filter((e) => e.thread_id === ctx.spanId).sort((a, b) => a.seq - b.seq);
    assert.deepEqual(
      gwMain.map((e) => e.kind.type),
      [
        'span_start',
        'outbound_call',
        'outbound_response',
        'outbound_call',
        'outbound_response',
        'function_call',
        'span_end',
      ],
    );
    assert.ok(!gwEvents.some((e) => e.kind.type === 'http_request' || e.kind.type === 'http_response'));
    const end = gwMain[gwMain.length - 1]!;
    assert.equal((end.kind as any).status_code, 200);
    assert.equal((end.kind as any).error, false);
    assert.ok(typeof end.duration_ns === 'number' && end.duration_ns >= 0);
    const start = gwMain[0]!.kind as any;
    assert.equal(start.operation, 'GET /buy');
    assert.deepEqual(start.http, { method: 'GET', route: '/buy', target: '/buy?x=1' });
    assert.deepEqual(start.upstream, { traceparent: 'valid', clock: 'absent' });
    assert.equal(gwMain[0]!.parent_span_id, '00f067aa0ba902b7');
    assert.equal(gwMain[5]!.kind.type === 'function_call' && gwMain[5]!.kind.function, 'add');
    assert.match(gwMain[5]!.location ?? '', /server\.test\.ts:\d+:\d+$/);
    assert.ok((gwMain[5]!.duration_ns ?? -1) >= 0);
    for (const e of gwMain) assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);

    for (let i = 0; i < 2; i++) {
      const call = gwMain[1 + 2 * i]!.kind as any;
      const resp = gwMain[2 + 2 * i]!.kind as any;
      assert.equal(resp.child_span_id, call.child_span_id);
      assert.equal(resp.status, 200);
      const coStart = coEvents.find((e) => e.kind.type === 'span_start' && e.parent_span_id === call.child_span_id)!;
      assert.ok(coStart, 'callee span_start links to outbound_call');
      assert.deepEqual((coStart.kind as any).upstream, { traceparent: 'valid', clock: 'ok' });
      assert.equal((coStart.kind as any).operation, 'GET /items/:id');
      assert.equal(resp.callee.span_id, coStart.span_id);
      assert.equal(resp.callee.service, 'checkout');
      assert.equal(resp.callee.trace_id, '4bf92f35-77b3-4da6-a3ce-929d0e0e4736');
      const coEnd = coEvents.find((e) => e.kind.type === 'span_end' && e.span_id === coStart.span_id)!;
      // outbound_call -> callee span_start; callee span_end -> outbound_response
      assert.equal(compareClocks(gwMain[1 + 2 * i]!.vector_clock, coStart.vector_clock), 'before');
      assert.equal(compareClocks(coEnd.vector_clock, gwMain[2 + 2 * i]!.vector_clock), 'before');
      // forks/joins and locks on the callee
      const spans = coEvents.filter((e) => e.span_id === coStart.span_id);
      const spawns = spans.filter((e) => e.kind.type === 'async_spawn').map((e) => (e.kind as any).child_thread_id);
      const awaits = spans.filter((e) => e.kind.type === 'async_await').map((e) => (e.kind as any).child_thread_id);
      assert.deepEqual(spawns, [`${coStart.span_id}.1`, `${coStart.span_id}.2`]);
      assert.deepEqual(awaits, spawns);
      const acq = spans.filter((e) => e.kind.type === 'lock_acquire');
      const rel = spans.filter((e) => e.kind.type === 'lock_release');
      assert.equal(acq.length, 2);
      assert.equal(rel.length, 2);
      for (const e of [...acq, ...rel]) assert.deepEqual(e.locks_held, [{ lock: `item:${i + 1}`, mode: 'exclusive' }]);
      const child1 = spans.filter((e) => e.thread_id === `${coStart.span_id}.1`);
      assert.deepEqual(child1.map((e) => e.seq), child1.map((_, j) => j));
      assert.deepEqual(child1.map((e) => e.kind.type), ['lock_acquire', 'state_change', 'lock_release']);
      const spawnEv = spans.find((e) => e.kind.type === 'async_spawn')!;
      assert.equal(compareClocks(spawnEv.vector_clock, child1[0]!.vector_clock), 'before');
    }

    // Everything captured validates against spec/events.schema.json, and reached the backend.
    const batch = { events: [...gwEvents, ...coEvents] };
    const v = validate(batch);
    assert.ok(v.ok, v.errors);
    await gateway.flush(2000);
    await checkout.flush(2000);
    const ids = new Set(backend.events().map((e) => e.id));
    for (const e of batch.events) assert.ok(ids.has(e.id), 'event exported');
    const exported = validate({ events: backend.events() });
    assert.ok(exported.ok, exported.errors);
    assert.ok(gateway.stats().events_sent >= gwEvents.length);
  });

  it('the schema validator itself accepts the valid vectors and rejects the invalid ones', () => {
    const valid = loadVectors('events/valid_batch.json');
    assert.ok(validate(valid).ok, validate(valid).errors);
    const invalid = loadVectors('events/invalid_events.json');
    const cases: any[] = Array.isArray(invalid) ? invalid : invalid.cases ?? invalid.events;
    assert.ok(cases.length > 0);
    for (const c of cases) {
      const ev = c.event ?? c;
      assert.equal(validate({ events: [ev] }).ok, false, JSON.stringify(c).slice(0, 200));
    }
  });

  it('starts a new trace without traceparent and for outside-context calls', async () => {
    const res = await fetch(`${gwUrl}/buy`);
    const body = (await res.json()) as any;
    assert.equal(body.ctx.parentSpanId, null);
    assert.match(body.ctx.traceId, /^[0-9a-f]{32}$/);
    assert.equal(body.ctx.flags, 3);
    const d = decodeClock(res.headers.get('raceway-clock')!);
    assert.ok(d.ok && d.payload.parent_span_id === null);

    received.length = 0;
    const r = await gateway.fetch(`${coUrl}/items/9`);
    assert.equal(r.status, 200);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-03$/.exec(received[0]!.traceparent!);
    assert.ok(m, received[0]!.traceparent);
    assert.equal(received[0]!.tracestate, `raceway=${m[2]}`);
  });

  it('hostile headers never fail a request and are counted', async () => {
    const bomb = loadVectors('raceway_clock.json').decode.find((c: any) => c.name === 'zstd bomb').header;
    const before = gateway.stats();
    const cases: Array<[Record<string, string>, string]> = [
      [{ traceparent: 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }, 'new'],
      [{ traceparent: TP, 'raceway-clock': bomb }, 'too_large'],
      [{ traceparent: TP, 'raceway-clock': `v1;${'A'.repeat(8300)}` }, 'too_long'],
      [{ traceparent: TP, 'raceway-clock': 'v1;!!!' }, 'malformed'],
      [{ traceparent: TP, tracestate: 'Bad=1' }, 'absent'],
      [{ traceparent: TP, tracestate: 'x'.repeat(9000) }, 'absent'],
    ];
    for (const [headers, status] of cases) {
      gwEvents.length = 0;
      const t0 = Date.now();
      const res = await fetch(`${gwUrl}/buy`, { headers });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.ok(Date.now() - t0 < 2000);
      const start = gwEvents.find((e) => e.kind.type === 'span_start')!;
      if (status === 'new') assert.deepEqual((start.kind as any).upstream, { traceparent: 'invalid', clock: 'absent' });
      else assert.equal((start.kind as any).upstream.clock, status);
    }
    const after = gateway.stats();
    assert.equal(after.header_parse_errors - before.header_parse_errors, 6);
    assert.equal(after.traceparent_errors - before.traceparent_errors, 1);
    assert.equal(after.clock_errors - before.clock_errors, 3);
    assert.equal(after.tracestate_errors - before.tracestate_errors, 2);
  });

  it('counts a clock of another trace as a conflict and merges a reparented clock', async () => {
    const base = {
      trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736',
      span_id: '00f067aa0ba902b7',
      parent_span_id: 'a3ce929d0e0e4736',
      service: 'edge',
      instance: 'edge-1',
      clock: [['edge#edge-1', 7]] as Array<[string, number]>,
      flags: [],
    };
    const before = gateway.stats().clock_conflicts;
    let res = await fetch(`${gwUrl}/buy`, {
      headers: { traceparent: TP, 'raceway-clock': encodeClock({ ...base, trace_id: '11111111-2222-4333-8444-555555555555' }) },
    });
    let body = (await res.json()) as any;
    assert.equal(gateway.stats().clock_conflicts, before + 1);
    assert.ok(!body.ctx.clock.some(([k]: [string]) => k === 'edge#edge-1'));

    res = await fetch(`${gwUrl}/buy`, {
      headers: { traceparent: TP, 'raceway-clock': encodeClock({ ...base, span_id: 'b7ad6b7169203331' }) },
    });
    body = (await res.json()) as any;
    assert.equal(body.ctx.parentSpanId, 'b7ad6b7169203331', 'reparented: upstream call id is the clock span id');
    assert.ok(body.ctx.clock.some(([k, n]: [string, number]) => k === 'edge#edge-1' && n === 7));
  });

  it('records downstream errors (fetch 5xx, axios 5xx, connection refused)', async () => {
    gwEvents.length = 0;
    const res = await fetch(`${gwUrl}/downstream-error`);
    const body = (await res.json()) as any;
    assert.deepEqual(body, { status: 503, axiosStatus: 503 });
    const responses = gwEvents.filter((e) => e.kind.type === 'outbound_response').map((e) => e.kind as any);
    assert.equal(responses.length, 3);
    assert.equal(responses[0].status, 503);
    assert.equal(responses[1].status, 503);
    assert.equal(responses[2].status, undefined);
    assert.match(responses[2].error, /fetch failed|ECONNREFUSED/);
    const v = validate({ events: gwEvents });
    assert.ok(v.ok, v.errors);
  });
});

describe('propagation disabled', () => {
  it('middleware and clients pass through untouched', async () => {
    const seen: Array<string | undefined> = [];
    const target = http.createServer((req, res) => {
      seen.push(req.headers.traceparent as string | undefined);
      res.end('ok');
    });
    const targetUrl = await listen(target);
    const rw = new Raceway({ serviceName: 'off', propagationEnabled: false });
    const app = express();
    app.use(rw.middleware());
    app.get('/', async (_req, res) => {
      const ctx = rw.currentContext();
      await rw.fetch(targetUrl, { headers: { 'x-a': '1' } });
      await rw.instrumentAxios(axios.create()).get(targetUrl);
      res.json({ ctx: ctx ?? null });
    });
    const srv = http.createServer(app);
    const url = await listen(srv);
    const res = await fetch(url, { headers: { traceparent: TP } });
    assert.equal(res.headers.get('raceway-clock'), null);
    assert.deepEqual(await res.json(), { ctx: null });
    assert.deepEqual(seen, [undefined, undefined]);
    await close(srv);
    await close(target);
  });

  it('an empty config constructs and works in propagation-only mode', async () => {
    const rw = new Raceway();
    assert.equal(rw.stats().events_sent, 0);
    assert.equal(rw.currentContext(), undefined);
    rw.trackStateChange('x', 'write', { newValue: 1 }); // outside context: no-op
    await rw.runInTrace('job', async () => {
      const c = rw.currentContext()!;
      assert.equal(c.seq, 1);
      rw.trackCustom('hello', { a: 1 });
      assert.equal(rw.currentContext()!.seq, 2);
    });
    await rw.shutdown();
    // Odd inputs never throw at construction.
    new Raceway({ batchSize: -1, queueCapacity: Number.NaN, endpoint: '', serviceName: '' } as any);
    new Raceway(undefined);
  });

  it('debug mode logs received and sent headers through the logger', async () => {
    const lines: string[] = [];
    const rw = new Raceway({
      serviceName: 'dbg',
      propagationHeadersDebug: true,
      logger: { debug: (m: string) => lines.push(m), warn: () => undefined },
    });
    const srv = http.createServer(rw.wrapHandler((_req, res) => res.end('ok')));
    const url = await listen(srv);
    await (await fetch(url, { headers: { traceparent: 'garbage' } })).text();
    await (await rw.fetch(url)).text();
    await close(srv);
    assert.ok(lines.some((l) => l.includes('received') && l.includes('invalid(malformed)')));
    assert.ok(lines.some((l) => l.includes('sent') && l.includes('traceparent')));
  });
});

describe('server request events (EVENTS.md: exactly span_start + span_end per inbound request)', () => {
  const events: RacewayEvent[] = [];
  const rw = new Raceway({ serviceName: 'srv', instanceId: 'srv-1', onEvent: (e) => events.push(e) });
  const validate = batchValidator();
  let srv: Server;
  let url = '';

  before(async () => {
    const app = express();
    app.use(rw.middleware());
    app.post('/orders/:id', (_req, res) => {
      res.status(201).json({ ok: true });
    });
    app.get('/boom', (_req, res) => {
      res.status(500).send('boom');
    });
    srv = http.createServer(app);
    url = await listen(srv);
  });

  after(async () => {
    await close(srv);
    await rw.shutdown(1000);
  });

  it('records span_start (with http) and span_end (status_code, error, duration_ns) and nothing else', async () => {
    events.length = 0;
    const res = await fetch(`${url}/orders/7?q=1`, { method: 'POST', headers: { traceparent: TP } });
    assert.equal(res.status, 201);
    await res.arrayBuffer();
    await waitFor(() => events.some((e) => e.kind.type === 'span_end'));
    assert.deepEqual(events.map((e) => e.kind.type), ['span_start', 'span_end']);
    assert.deepEqual(events.map((e) => e.seq), [0, 1]);
    const [start, end] = events as [RacewayEvent, RacewayEvent];
    assert.equal(start.span_id, end.span_id);
    assert.deepEqual((start.kind as any).http, { method: 'POST', route: '/orders/:id', target: '/orders/7?q=1' });
    assert.equal((start.kind as any).operation, 'POST /orders/:id');
    assert.equal((end.kind as any).operation, 'POST /orders/:id');
    assert.equal((end.kind as any).status_code, 201);
    assert.equal((end.kind as any).error, false);
    assert.ok(typeof end.duration_ns === 'number' && end.duration_ns >= 0, 'span_end.duration_ns');
    // The response raceway-clock is encoded after span_end's tick: it equals span_end's clock.
    const decoded = decodeClock(res.headers.get('raceway-clock')!);
    assert.ok(decoded.ok);
    if (decoded.ok) {
      assert.equal(decoded.payload.span_id, end.span_id);
      assert.deepEqual(decoded.payload.clock, end.vector_clock);
    }
    const v = validate({ events });
    assert.ok(v.ok, v.errors);
  });

  it('marks span_end error=true with the status code for a 5xx response', async () => {
    events.length = 0;
    const res = await fetch(`${url}/boom`);
    assert.equal(res.status, 500);
    await res.arrayBuffer();
    await waitFor(() => events.some((e) => e.kind.type === 'span_end'));
    assert.deepEqual(events.map((e) => e.kind.type), ['span_start', 'span_end']);
    const end = events[1]!;
    assert.equal((end.kind as any).status_code, 500);
    assert.equal((end.kind as any).error, true);
    assert.ok(typeof end.duration_ns === 'number' && end.duration_ns >= 0);
    assert.deepEqual((events[0]!.kind as any).http, { method: 'GET', route: '/boom', target: '/boom' });
  });
});
