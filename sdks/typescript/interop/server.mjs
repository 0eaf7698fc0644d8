// Interop server for the cross-SDK test driver. Uses the built package (run `npm run build` first):
//   PORT=7001 RACEWAY_SERVICE=ts-a node interop/server.mjs
// GET /health -> "ok"; GET /hop?next=<url> -> JSON describing what this hop received and its downstream answer.
import express from 'express';
import { Raceway } from '../dist/index.js';

const port = Number(process.env.PORT ?? 0);
const raceway = new Raceway({
  serviceName: process.env.RACEWAY_SERVICE || 'ts-interop',
  endpoint: process.env.RACEWAY_ENDPOINT || undefined,
});

const app = express();
app.get('/health', (_req, res) => {
  res.type('text/plain').send('ok');
});
app.use(raceway.middleware());
app.get('/hop', async (req, res) => {
  try {
    const next = typeof req.query.next === 'string' && req.query.next !== '' ? req.query.next : null;
    let downstream = null;
    if (next) {
      const r = await raceway.fetch(next);
      const text = await r.text();
      try {
        downstream = JSON.parse(text);
      } catch {
        downstream = { status: r.status, body: text };
      }
    }
    const ctx = raceway.currentContext();
    const header = (name) => {
      const v = req.headers[name];
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    };
    res.json({
      service: raceway.config.serviceName,
      trace_id: ctx.traceId,
      span_id: ctx.spanId,
      parent_id: ctx.upstream?.parentId ?? null,
      received: {
        traceparent: header('traceparent'),
        tracestate: header('tracestate'),
        raceway_clock: header('raceway-clock'),
      },
      clock_status: ctx.upstream?.clockStatus ?? 'absent',
      clock: ctx.clock,
      downstream,
    });
  } catch (e) {
    res.status(500).json({ error: String(e) });
  }
});

const server = app.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  console.log(`raceway ts interop server listening on 127.0.0.1:${typeof addr === 'object' && addr ? addr.port : port}`);
});
const stop = async () => {
  server.close();
  await raceway.shutdown(2000);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
