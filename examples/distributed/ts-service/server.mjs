// ts-gateway: the entry of the Raceway cross-language demo (TypeScript → Python → Go → Rust).
// Inbound: the SDK's Express middleware. Outbound: raceway.fetch (propagation + response clock merge).
// Fan-out: raceway.all (each branch is its own logical thread). See ../README.md.
import express from 'express';
import { Raceway } from '@raceway/sdk';

const SERVICE = 'ts-gateway';
const port = Number(process.env.DEMO_TS_PORT ?? 6001);
const urls = {
  ts: `http://127.0.0.1:${process.env.DEMO_TS_PORT ?? 6001}`,
  py: `http://127.0.0.1:${process.env.DEMO_PY_PORT ?? 6002}`,
  go: `http://127.0.0.1:${process.env.DEMO_GO_PORT ?? 6003}`,
  rust: `http://127.0.0.1:${process.env.DEMO_RUST_PORT ?? 6004}`,
};
const next = urls.py;

// RACEWAY_ENDPOINT and RACEWAY_INSTANCE_ID come from the environment (set by lib.sh).
const raceway = new Raceway({ serviceName: SERVICE, flushIntervalMs: 100 });

const store = new Map(); // the shared state the tracked variables stand for
const gatewayLock = raceway.mutex('lock:gateway');
const fanoutLock = raceway.mutex('lock:fanout');

/** Reads then writes `variable` (both tracked); returns the new value. */
function bump(variable) {
  const old = store.get(variable) ?? 0;
  raceway.trackRead(variable, old);
  store.set(variable, old + 1);
  raceway.trackWrite(variable, old, old + 1);
  return old + 1;
}

// A traced function call: a small "request validation" (function_call event with its duration).
const validate = raceway.trackFunction(
  async (body) => {
    await new Promise((r) => setTimeout(r, 3));
    return typeof body === 'object';
  },
  { name: 'validateRequest', module: 'ts-gateway' },
);

const traceId = () => raceway.currentContext()?.traceId;
const dropQuery = (req) => (req.query.drop ? `?drop=${encodeURIComponent(String(req.query.drop))}` : '');

async function call(url) {
  const r = await raceway.fetch(url, { method: 'POST' });
  const text = await r.text();
  try {
    return { status: r.status, body: JSON.parse(text) };
  } catch {
    return { status: r.status, body: text };
  }
}

const app = express();
app.use(raceway.middleware());
app.use(express.json());

app.get('/health', (_req, res) => res.send('ok'));

// Linear chain: work, write chain:ts-gateway under lock:gateway, then call py-orders /chain.
app.post('/chain', async (req, res, nextFn) => {
  try {
    await validate(req.body ?? {});
    const value = await gatewayLock.withLock(async () => bump(`chain:${SERVICE}`));
    const downstream = await call(`${next}/chain${dropQuery(req)}`);
    res.status(downstream.status === 200 ? 200 : 502).json({ service: SERVICE, trace_id: traceId(), value, downstream });
  } catch (e) {
    nextFn(e);
  }
});

// Sequential same-name writes: write demo:sequential, then the next service does the same.
app.post('/sequential', async (req, res, nextFn) => {
  try {
    await validate(req.body ?? {});
    const value = bump('demo:sequential');
    const downstream = await call(`${next}/sequential${dropQuery(req)}`);
    res.status(downstream.status === 200 ? 200 : 502).json({ service: SERVICE, trace_id: traceId(), value, downstream });
  } catch (e) {
    nextFn(e);
  }
});

// Fan-out: with ?targets=a,b call both targets' /fanout CONCURRENTLY (raceway.all); without targets act as a
// callee and write demo:fanout (under lock:fanout when ?locked=1).
app.post('/fanout', async (req, res, nextFn) => {
  try {
    const locked = req.query.locked === '1';
    const targets = String(req.query.targets ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (targets.length === 0) {
      const write = async () => {
        const old = store.get('demo:fanout') ?? 0;
        raceway.trackRead('demo:fanout', old);
        await new Promise((r) => setTimeout(r, 20));
        store.set('demo:fanout', old + 1);
        raceway.trackWrite('demo:fanout', old, old + 1);
        return old + 1;
      };
      const value = locked ? await fanoutLock.withLock(write) : await write();
      res.json({ service: SERVICE, trace_id: traceId(), locked, value });
      return;
    }
    const unknown = targets.filter((t) => !(t in urls));
    if (unknown.length) {
      res.status(400).json({ error: `unknown targets ${unknown.join(',')} (use ts, py, go, rust)` });
      return;
    }
    const q = locked ? '?locked=1' : '';
    const results = await raceway.all(targets.map((t) => () => call(`${urls[t]}/fanout${q}`)));
    const ok = results.every((r) => r.status === 200);
    res.status(ok ? 200 : 502).json({ service: SERVICE, trace_id: traceId(), locked, targets, downstream: results });
  } catch (e) {
    nextFn(e);
  }
});

const server = app.listen(port, '127.0.0.1', () => {
  console.error(`${SERVICE} listening on 127.0.0.1:${port} (exporting to ${process.env.RACEWAY_ENDPOINT ?? 'nowhere'})`);
});

async function stop() {
  server.close();
  await raceway.shutdown(2000);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
