// Bounded in-memory queue + background batch sender (POST <endpoint>/v1/events).
import type { RacewayEvent, ResolvedConfig } from './config.js';
import type { Stats } from './stats.js';

export const MAX_BATCH_BYTES = 1024 * 1024 - 1024; // strictly below 1 MiB, with room for the envelope

/** `ref = false` lets the process exit while only the background sender waits; flush/shutdown keep it alive. */
const sleep = (ms: number, ref: boolean) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    if (!ref) t.unref();
  });

type SendOutcome = { kind: 'ok' } | { kind: 'drop'; status?: number } | { kind: 'retry'; retryAfterMs?: number };

/** Parses `Retry-After` (seconds or HTTP date) into ms. */
export function parseRetryAfter(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const d = Date.parse(t);
  return Number.isNaN(d) ? undefined : Math.max(0, d - now);
}

export class Exporter {
  private readonly queue: RacewayEvent[] = [];
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;
  private closed = false;
  /** Absolute deadline (Date.now ms) while flushing/shutting down: retries and sleeps never go past it. */
  private deadline = Infinity;
  private readonly fetchImpl: typeof fetch;

  constructor(
    private readonly cfg: ResolvedConfig,
    private readonly stats: Stats,
    fetchImpl: typeof fetch = globalThis.fetch,
  ) {
    this.url = `${cfg.endpoint}/v1/events`;
    this.headers = { 'content-type': 'application/json' };
    if (cfg.apiKey) this.headers.authorization = `Bearer ${cfg.apiKey}`;
    this.fetchImpl = fetchImpl;
    this.timer = setInterval(() => this.kick(), cfg.flushIntervalMs);
    this.timer.unref();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Never blocks: a full queue drops the event and counts it. */
  enqueue(e: RacewayEvent): void {
    if (this.closed || this.queue.length >= this.cfg.queueCapacity) {
      this.stats.events_dropped++;
      return;
    }
    this.queue.push(e);
    this.stats.events_captured++;
    if (this.queue.length >= this.cfg.batchSize && !this.sending) this.kick();
  }

  private kick(): void {
    if (this.sending || this.queue.length === 0) return;
    this.sending = this.drain()
      .catch(() => undefined)
      .finally(() => {
        this.sending = null;
      });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      if (Date.now() >= this.deadline) return;
      const { body, count } = this.takeBatch();
      if (count === 0) continue;
      await this.sendWithRetry(body, count);
      // Only one full batch per tick unless the queue holds more than a batch (or we are flushing).
      if (this.queue.length < this.cfg.batchSize && this.deadline === Infinity) return;
    }
  }

  private takeBatch(): { body: string; count: number } {
    const parts: string[] = [];
    let bytes = 12;
    let count = 0;
    while (count < this.cfg.batchSize && this.queue.length > 0) {
      const e = this.queue[0]!;
      let s: string;
      try {
        s = JSON.stringify(e);
      } catch {
        this.queue.shift();
        this.stats.events_dropped++;
        continue;
      }
      if (s.length + 1 > MAX_BATCH_BYTES) {
        // A single event can never fit: drop it.
        this.queue.shift();
        this.stats.events_dropped++;
        continue;
      }
      const len = Buffer.byteLength(s) + 1;
      if (bytes + len > MAX_BATCH_BYTES) break;
      this.queue.shift();
      parts.push(s);
      bytes += len;
      count++;
    }
    return { body: `{"events":[${parts.join(',')}]}`, count };
  }

  private async sendOnce(body: string): Promise<SendOutcome> {
    const remaining = this.deadline - Date.now();
    const timeout = Math.max(1, Math.min(this.cfg.requestTimeoutMs, remaining));
    try {
      const res = await this.fetchImpl(this.url, {
        method: 'POST',
        headers: this.headers,
        body,
        signal: AbortSignal.timeout(timeout),
      });
      // Drain the body so the connection can be reused.
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { kind: 'ok' };
      if (res.status === 429 || res.status >= 500) {
        return { kind: 'retry', retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
      }
      return { kind: 'drop', status: res.status };
    } catch {
      return { kind: 'retry' };
    }
  }

  private async sendWithRetry(body: string, count: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const out = await this.sendOnce(body);
      if (out.kind === 'ok') {
        this.stats.events_sent += count;
        this.stats.batches_sent++;
        return;
      }
      if (out.kind === 'drop' || attempt >= this.cfg.maxAttempts) {
        this.stats.batches_failed++;
        this.stats.events_failed += count;
        if (out.kind === 'drop') this.stats.batches_rejected++;
        return;
      }
      this.stats.retries++;
      const backoff = Math.min(this.cfg.maxBackoffMs, this.cfg.retryBaseMs * 2 ** (attempt - 1));
      const jittered = backoff / 2 + Math.random() * (backoff / 2);
      const wait = Math.min(Math.max(jittered, out.retryAfterMs ?? 0), Math.max(this.cfg.maxBackoffMs, 30_000));
      if (Date.now() + wait >= this.deadline) {
        this.stats.batches_failed++;
        this.stats.events_failed += count;
        return;
      }
      await sleep(wait, this.deadline !== Infinity);
    }
  }

  /** Sends everything queued, giving up (and counting the rest as dropped) at the deadline. */
  async flush(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + Math.max(0, timeoutMs);
    const prev = this.deadline;
    this.deadline = Math.min(prev, deadline);
    try {
      while (Date.now() < deadline) {
        if (this.sending) {
          let timer: NodeJS.Timeout | undefined;
          const expired = new Promise<void>((r) => {
            timer = setTimeout(r, Math.max(0, deadline - Date.now()));
          });
          await Promise.race([this.sending, expired]);
          clearTimeout(timer);
          continue;
        }
        if (this.queue.length === 0) break;
        this.kick();
      }
    } finally {
      this.deadline = prev;
    }
  }

  async shutdown(timeoutMs = 5000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush(timeoutMs);
    this.closed = true;
    if (this.queue.length > 0) {
      this.stats.events_failed += this.queue.length;
      this.queue.length = 0;
    }
  }
}
