import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import express from 'express';
import { parseRetryAfter, Raceway } from '../src/index.js';
import { close, FakeBackend, listen, sleep, waitFor } from './helpers2.js';

async function closedPortUrl(): Promise<string> {
  const s = http.createServer();
  const url = await listen(s);
  await close(s);
  return url;
}

async function emit(rw: Raceway, n: number, data?: unknown): Promise<number> {
  const t0 = performance.now();
  await rw.runInTrace('job', () => {
    for (let i = 0; i < n; i++) rw.trackCustom('tick', data ?? { i });
  });
  return performance.now() - t0;
}

/** Times requests to an instrumented Express app while the backend misbehaves. */
async function appLatency(rw: Raceway, requests = 20): Promise<number> {
  const app = express();
  app.use(rw.middleware());
  app.get('/', (_req, res) => {
    for (let i = 0; i < 50; i++) rw.trackStateChange('k', 'write', { newValue: i });
    res.send('ok');
  });
  const srv = http.createServer(app);
  const url = await listen(srv);
  let worst = 0;
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const r = await fetch(url);
    assert.equal(r.status, 200);
    await r.text();
    worst = Math.max(worst, performance.now() - t0);
  }
  await close(srv);
  return worst;
}

describe('exporter resilience (real local HTTP servers)', () => {
  it('delivers batches of <= batchSize with the API key', async () => {
    const backend = new FakeBackend();
    const endpoint = await backend.start();
    const rw = new Raceway({ serviceName: 's', endpoint, apiKey: 'k3y', batchSize: 7, flushIntervalMs: 10 });
    await emit(rw, 30);
    await rw.flush(3000);
    const s = rw.stats();
    assert.equal(s.events_sent, 32); // span_start + 30 custom + span_end
    assert.equal(s.events_captured, 32);
    assert.equal(s.events_dropped, 0);
    assert.equal(s.events_failed, 0);
    assert.ok(backend.batches.every((b) => b.events.length <= 7));
    assert.ok(backend.requests.every((r) => r.headers.authorization === 'Bearer k3y'));
    assert.ok(backend.requests.every((r) => r.headers['content-type'] === 'application/json'));
    await rw.shutdown(1000);
    await backend.stop();
  });

  it('keeps each POST body below 1 MiB', async () => {
    const backend = new FakeBackend();
    const endpoint = await backend.start();
    const rw = new Raceway({ serviceName: 's', endpoint, batchSize: 100, flushIntervalMs: 10 });
    await emit(rw, 60, { blob: 'x'.repeat(50_000) });
    await rw.flush(5000);
    assert.equal(rw.stats().events_sent, 62);
    assert.ok(backend.requests.length >= 3);
    for (const r of backend.requests) assert.ok(Buffer.byteLength(r.body) < 1024 * 1024);
    await rw.shutdown(1000);
    await backend.stop();
  });

  it('backend down (closed port): never blocks or slows the app, counts failures', async () => {
    const endpoint = await closedPortUrl();
    const rw = new Raceway({ serviceName: 's', endpoint, flushIntervalMs: 10, maxAttempts: 3, retryBaseMs: 5 });
    const ms = await emit(rw, 5000);
    assert.ok(ms < 5000, `5000 events took ${ms} ms`);
    const worst = await appLatency(rw);
    assert.ok(worst < 1500, `worst request ${worst} ms`);
    await waitFor(() => rw.stats().batches_failed > 0, 5000);
    await rw.shutdown(500);
    const s = rw.stats();
    assert.equal(s.events_sent, 0);
    assert.ok(s.retries > 0);
    assert.ok(s.events_failed > 0);
    // every captured event is eventually accounted for (a batch in flight at the deadline finishes later)
    await waitFor(() => rw.stats().events_failed === rw.stats().events_captured, 5000);
    assert.equal(s.events_queued, 0);
  });

  it('slow backend: sends time out, app latency unaffected, shutdown honours its deadline', async () => {
    const backend = new FakeBackend();
    backend.behaviour = (_req, res) => {
      setTimeout(() => {
        res.writeHead(200);
        res.end('{}');
      }, 4000).unref();
    };
    const endpoint = await backend.start();
    const rw = new Raceway({
      serviceName: 's',
      endpoint,
      flushIntervalMs: 10,
      requestTimeoutMs: 3000,
      maxAttempts: 2,
      retryBaseMs: 10,
    });
    await emit(rw, 300);
    await waitFor(() => backend.requests.length >= 1); // a POST is now hanging on the slow backend
    const worst = await appLatency(rw);
    assert.ok(worst < 1500, `worst request ${worst} ms while the backend hangs`);
    const t0 = Date.now();
    await rw.shutdown(700);
    const took = Date.now() - t0;
    assert.ok(took < 2000, `shutdown took ${took} ms`);
    const s = rw.stats();
    assert.equal(s.events_sent, 0);
    assert.ok(s.events_failed > 0);
    assert.ok(backend.requests.length >= 1);
    await backend.stop();
  });

  it('rejecting backend (400): never retries a 4xx batch, drops and counts it', async () => {
    const backend = new FakeBackend();
    backend.behaviour = (_req, res) => {
      res.writeHead(400);
      res.end('bad');
    };
    const endpoint = await backend.start();
    const rw = new Raceway({ serviceName: 's', endpoint, batchSize: 10, flushIntervalMs: 10, retryBaseMs: 5 });
    await emit(rw, 28); // 30 events -> 3 batches
    await rw.flush(3000);
    const s = rw.stats();
    assert.equal(backend.requests.length, 3);
    assert.equal(s.batches_failed, 3);
    assert.equal(s.batches_rejected, 3);
    assert.equal(s.retries, 0);
    assert.equal(s.events_failed, 30);
    assert.equal(s.events_dropped, 0);
    await rw.shutdown(500);
    await backend.stop();
  });

  it('rejecting backend (500): retries with backoff, then gives up; recovers when the backend does', async () => {
    const backend = new FakeBackend();
    let failures = 2;
    backend.behaviour = (_req, res) => {
      if (failures-- > 0) {
        res.writeHead(500);
        res.end('boom');
      } else {
        res.writeHead(200);
        res.end('{}');
      }
    };
    const endpoint = await backend.start();
    const rw = new Raceway({ serviceName: 's', endpoint, flushIntervalMs: 10, retryBaseMs: 20 });
    await emit(rw, 3);
    await rw.flush(3000);
    const s = rw.stats();
    assert.equal(s.events_sent, 5);
    assert.equal(s.retries, 2);
    assert.equal(backend.requests.length, 3);
    assert.equal(backend.requests[0]!.body, backend.requests[2]!.body, 'same batch retried');

    failures = 1000;
    const before = backend.requests.length;
    await emit(rw, 1);
    await rw.flush(5000);
    assert.equal(backend.requests.length - before, rw.config.maxAttempts);
    assert.equal(rw.stats().batches_failed, 1);
    await rw.shutdown(500);
    await backend.stop();
  });

  it('honours Retry-After on 429', async () => {
    const backend = new FakeBackend();
    const times: number[] = [];
    backend.behaviour = (_req, res) => {
      times.push(Date.now());
      if (times.length === 1) {
        res.writeHead(429, { 'retry-after': '1' });
        res.end();
      } else {
        res.writeHead(200);
        res.end('{}');
      }
    };
    const endpoint = await backend.start();
    const rw = new Raceway({ serviceName: 's', endpoint, flushIntervalMs: 10, retryBaseMs: 5 });
    await emit(rw, 1);
    await rw.flush(5000);
    assert.equal(rw.stats().events_sent, 3);
    assert.equal(times.length, 2);
    assert.ok(times[1]! - times[0]! >= 950, `waited ${times[1]! - times[0]!} ms`);
    await rw.shutdown(500);
    await backend.stop();
  });

  it('a full queue drops new events without blocking', async () => {
    const endpoint = await closedPortUrl();
    const rw = new Raceway({ serviceName: 's', endpoint, queueCapacity: 10, flushIntervalMs: 60_000, batchSize: 1000 });
    const ms = await emit(rw, 100);
    assert.ok(ms < 1000);
    const s = rw.stats();
    assert.equal(s.events_queued, 10);
    assert.equal(s.events_dropped, 92);
    assert.equal(s.events_captured, 10);
    await rw.shutdown(100);
  });

  it('parses Retry-After seconds and dates', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:02 GMT', now), 2000);
  });
});

void sleep;
