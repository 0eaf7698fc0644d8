// Propagation + event-capture micro-benchmark, Raceway side by side with OpenTelemetry's W3CTraceContextPropagator.
// Run: npm run bench   (builds, then `node bench/propagation.mjs`; ITER=200000 to change iterations)
import { context, defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { encodeClock, extract, inject, Raceway } from '../dist/index.js';

const pkgVersion = (name) => JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;
const ITER = Number(process.env.ITER ?? 100_000);
const ROUNDS = 7;

function bench(name, fn, iter = ITER) {
  for (let i = 0; i < Math.min(iter, 20_000); i++) fn(i); // warm-up
  const samples = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iter; i++) fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / iter);
  }
  samples.sort((a, b) => a - b);
  return { name, ns: samples[Math.floor(ROUNDS / 2)], min: samples[0] };
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TRACESTATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
const clockPayload = {
  trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736',
  span_id: '00f067aa0ba902b7',
  parent_span_id: 'a3ce929d0e0e4736',
  service: 'checkout',
  instance: 'checkout-1',
  clock: [['checkout#checkout-1', 5], ['gateway#gw-1', 3], ['payments#pay-2', 12]],
  flags: [],
};
const CLOCK = encodeClock(clockPayload);
const linesW3C = [['traceparent', TRACEPARENT], ['tracestate', TRACESTATE]];
const linesAll = [...linesW3C, ['raceway-clock', CLOCK]];
let sink = 0;

// --- Raceway
const rows = [];
rows.push(['extract traceparent+tracestate', bench('raceway', () => { sink ^= extract(linesW3C).tracestate.length; })]);
rows.push(['extract + raceway-clock (zstd decode)', bench('raceway', () => { sink ^= extract(linesAll).clock.clock.length; })]);
rows.push(['inject traceparent+tracestate', bench('raceway', () => {
  sink ^= inject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1, tracestate: [['rojo', '1'], ['congo', '2']], tracestateEntry: true, clock: null }).length;
})]);
rows.push(['inject + raceway-clock (zstd encode)', bench('raceway', () => {
  sink ^= inject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1, tracestate: [['rojo', '1'], ['congo', '2']], tracestateEntry: true, clock: clockPayload }).length;
}, Math.ceil(ITER / 5))]);

// --- OpenTelemetry
const otel = new W3CTraceContextPropagator();
const otelExtract = bench('otel', () => {
  const ctx = otel.extract(ROOT_CONTEXT, { traceparent: TRACEPARENT, tracestate: TRACESTATE }, defaultTextMapGetter);
  sink ^= trace.getSpanContext(ctx) ? 1 : 0;
});
const otelSpanCtx = trace.setSpanContext(ROOT_CONTEXT, {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED,
  isRemote: false, traceState: otel.extract(ROOT_CONTEXT, { traceparent: TRACEPARENT, tracestate: TRACESTATE }, defaultTextMapGetter) && trace.getSpanContext(otel.extract(ROOT_CONTEXT, { traceparent: TRACEPARENT, tracestate: TRACESTATE }, defaultTextMapGetter)).traceState,
});
const otelInject = bench('otel', () => {
  const carrier = {};
  otel.inject(otelSpanCtx, carrier, defaultTextMapSetter);
  sink ^= carrier.traceparent.length;
});

// --- Event capture (inside a request context)
const capture = new Raceway({ serviceName: 'bench', instanceId: 'b-1', onEvent: () => { sink ^= 1; } });
const captureNoLoc = new Raceway({ serviceName: 'bench', instanceId: 'b-1', captureLocation: false, onEvent: () => { sink ^= 1; } });
const propagationOnly = new Raceway({ serviceName: 'bench', instanceId: 'b-1' });
const exporterQueue = new Raceway({ serviceName: 'bench', instanceId: 'b-1', endpoint: 'http://127.0.0.1:9', queueCapacity: 1_000_000_000, flushIntervalMs: 3_600_000 });
let captureRow, noCaptureRow, queueRow, noLocRow;
await captureNoLoc.runInTrace('bench', () => {
  noLocRow = bench('raceway', (i) => captureNoLoc.trackStateChange('account:42', 'write', { oldValue: i, newValue: i + 1 }), Math.ceil(ITER / 5));
});
await capture.runInTrace('bench', () => {
  captureRow = bench('raceway', (i) => capture.trackStateChange('account:42', 'write', { oldValue: i, newValue: i + 1 }), Math.ceil(ITER / 5));
});
await propagationOnly.runInTrace('bench', () => {
  noCaptureRow = bench('raceway', (i) => propagationOnly.trackStateChange('account:42', 'write', { oldValue: i, newValue: i + 1 }));
});
await exporterQueue.runInTrace('bench', () => {
  queueRow = bench('raceway', (i) => exporterQueue.trackStateChange('account:42', 'write', { oldValue: i, newValue: i + 1 }), Math.ceil(ITER / 5));
});
const tracer = trace.getTracer('bench');
const otelSpan = bench('otel', () => { const s = tracer.startSpan('op'); s.setAttribute('k', 1); s.end(); });
await exporterQueue.shutdown(0);

const fmt = (r) => (r ? `${r.ns.toFixed(0)} / ${r.min.toFixed(0)}` : '-');
const table = [
  ['operation', 'raceway ns/op (median / min)', 'otel ns/op (median / min)'],
  ['extract traceparent+tracestate', fmt(rows[0][1]), fmt(otelExtract)],
  ['extract + raceway-clock (zstd decode)', fmt(rows[1][1]), ''],
  ['inject traceparent+tracestate', fmt(rows[2][1]), fmt(otelInject)],
  ['inject + raceway-clock (zstd encode)', fmt(rows[3][1]), ''],
  ['event capture: trackStateChange, event built (+location)', fmt(captureRow), ''],
  ['event capture: event built, captureLocation false', fmt(noLocRow), ''],
  ['event capture: + location + enqueue for exporter', fmt(queueRow), ''],
  ['event capture: propagation-only (tick+seq only)', fmt(noCaptureRow), ''],
  ['otel api span start+end (no SDK = non-recording)', '', fmt(otelSpan)],
];
const w0 = Math.max(...table.map((r) => r[0].length));
console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${ITER} iterations x ${ROUNDS} rounds (median / min per op)`);
console.log(`@opentelemetry/core ${pkgVersion('@opentelemetry/core')}, @opentelemetry/api ${pkgVersion('@opentelemetry/api')}`);
for (const [i, r] of table.entries()) {
  console.log(`| ${r[0].padEnd(w0)} | ${String(r[1]).padStart(28)} | ${String(r[2]).padStart(25)} |`);
  if (i === 0) console.log(`|${'-'.repeat(w0 + 2)}|${'-'.repeat(30)}|${'-'.repeat(27)}|`);
}
console.log(`clock header length: ${CLOCK.length} bytes (${clockPayload.clock.length} components)`);
if (sink === 0.5) console.log(sink);
void context;
