import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeClock } from '../src/index.js';
import { close, listen, sleep } from './helpers2.js';
import http from 'node:http';
import { SDK_DIR } from './helpers.js';

const built = existsSync(join(SDK_DIR, 'dist', 'index.js'));

async function freePort(): Promise<number> {
  const s = http.createServer();
  const url = await listen(s);
  await close(s);
  return Number(new URL(url).port);
}

async function startServer(service: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(SDK_DIR, 'interop', 'server.mjs')], {
    env: { ...process.env, PORT: String(port), RACEWAY_SERVICE: service, RACEWAY_ENDPOINT: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok && (await r.text()) === 'ok') return { url, proc };
    } catch {
      /* not up yet */
    }
    await sleep(50);
  }
  proc.kill();
  throw new Error(`interop server ${service} did not start`);
}

describe('interop server (built package)', { skip: built ? false : 'run `npm run build` first' }, () => {
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) p.kill('SIGTERM');
  });

  it('chains hops with the SDK middleware and client', async () => {
    const a = await startServer('ts-a');
    const b = await startServer('ts-b');
    procs.push(a.proc, b.proc);
    const res = await fetch(`${a.url}/hop?next=${encodeURIComponent(`${b.url}/hop`)}`, {
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'rojo=1' },
    });
    assert.equal(res.status, 200);
    const j = (await res.json()) as any;
    assert.equal(j.service, 'ts-a');
    assert.equal(j.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(j.parent_id, '00f067aa0ba902b7');
    assert.equal(j.clock_status, 'absent');
    assert.equal(j.received.tracestate, 'rojo=1');
    const d = j.downstream;
    assert.equal(d.service, 'ts-b');
    assert.equal(d.trace_id, j.trace_id);
    assert.equal(d.clock_status, 'ok');
    assert.match(d.received.traceparent, new RegExp(`^00-${j.trace_id}-${d.parent_id}-01$`));
    assert.equal(d.received.tracestate, `raceway=${d.parent_id},rojo=1`);
    const c = decodeClock(d.received.raceway_clock);
    assert.ok(c.ok && c.payload.parent_span_id === j.span_id && c.payload.span_id === d.parent_id);
    // a's clock after the call includes b's component (merged from b's response clock)
    const bKey = d.clock.find(([k]: [string]) => k.startsWith('ts-b#'))[0];
    assert.ok(j.clock.some(([k, n]: [string, number]) => k === bKey && n >= 2));
    const rc = decodeClock(res.headers.get('raceway-clock')!);
    assert.ok(rc.ok && rc.payload.span_id === j.span_id && rc.payload.parent_span_id === '00f067aa0ba902b7');
  });
});
