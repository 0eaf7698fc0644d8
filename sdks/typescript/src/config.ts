import { hostname } from 'node:os';

export interface Logger {
  debug(message: string, ...args: unknown[]): void;
  warn(message: string, ...args: unknown[]): void;
}

/** All fields optional: an empty config works in propagation-only mode. */
export interface RacewayConfig {
  /** Service name (default: env RACEWAY_SERVICE, else `unknown-service`). */
  serviceName?: string;
  /** Instance id (default: env RACEWAY_INSTANCE_ID, else `<hostname>-<pid>`). */
  instanceId?: string;
  /** Backend base URL (default: env RACEWAY_ENDPOINT). None = propagation-only mode, no exporter. */
  endpoint?: string | null;
  /** API key sent as `Authorization: Bearer <key>` (default: env RACEWAY_API_KEY). */
  apiKey?: string | null;
  /** Default true. False: middleware and client wrappers pass requests through untouched. */
  propagationEnabled?: boolean;
  /** Default false. Logs received/sent propagation headers and header errors through `logger.debug`. */
  propagationHeadersDebug?: boolean;
  /** Default true: add `raceway=<span id>` to outgoing tracestate. */
  tracestateEntry?: boolean;
  /** Max events per batch (default 100). */
  batchSize?: number;
  /** Background flush interval in ms (default 1000). */
  flushIntervalMs?: number;
  /** Bounded event queue capacity (default 10,000); when full new events are dropped and counted. */
  queueCapacity?: number;
  /** Max components in the propagated clock (default 64). */
  maxClockComponents?: number;
  /** Clock component TTL in ms (default 15 min). */
  clockComponentTtlMs?: number;
  /** Timeout of one POST to the backend in ms (default 5000). */
  requestTimeoutMs?: number;
  /** Send attempts per batch on retryable failures (default 5). */
  maxAttempts?: number;
  /** Base of the exponential retry backoff in ms (default 100; capped at `maxBackoffMs`, default 10,000). */
  retryBaseMs?: number;
  maxBackoffMs?: number;
  /** Record the caller's `file:line:column` as `location` on tracking-API events (default true; costs a V8
   * stack capture per event). */
  captureLocation?: boolean;
  /** Logger (default: `console`). */
  logger?: Logger;
  /** Called synchronously with every recorded event (testing, local sinks). Must not throw. */
  onEvent?: (event: RacewayEvent) => void;
}

export interface ResolvedConfig {
  serviceName: string;
  instanceId: string;
  endpoint: string | null;
  apiKey: string | null;
  propagationEnabled: boolean;
  propagationHeadersDebug: boolean;
  tracestateEntry: boolean;
  batchSize: number;
  flushIntervalMs: number;
  queueCapacity: number;
  maxClockComponents: number;
  clockComponentTtlMs: number;
  requestTimeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  maxBackoffMs: number;
  captureLocation: boolean;
  logger: Logger;
  onEvent: ((event: RacewayEvent) => void) | null;
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function posInt(v: unknown, dflt: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 1 ? Math.floor(v) : dflt;
}

function nonEmpty(v: unknown, max = 256): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v.slice(0, max) : undefined;
}

function defaultInstance(): string {
  let host = 'localhost';
  try {
    host = hostname() || host;
  } catch {
    /* keep default */
  }
  return `${host}-${process.pid}`;
}

/** Never throws. */
export function resolveConfig(c: RacewayConfig = {}): ResolvedConfig {
  const cfg = (c ?? {}) as RacewayConfig;
  const endpoint = cfg.endpoint === null ? null : nonEmpty(cfg.endpoint, 4096) ?? env('RACEWAY_ENDPOINT') ?? null;
  return {
    serviceName: nonEmpty(cfg.serviceName) ?? nonEmpty(env('RACEWAY_SERVICE')) ?? 'unknown-service',
    instanceId: nonEmpty(cfg.instanceId) ?? nonEmpty(env('RACEWAY_INSTANCE_ID')) ?? defaultInstance().slice(0, 256),
    endpoint: endpoint ? endpoint.replace(/\/+$/, '') : null,
    apiKey: cfg.apiKey === null ? null : nonEmpty(cfg.apiKey, 4096) ?? env('RACEWAY_API_KEY') ?? null,
    propagationEnabled: cfg.propagationEnabled !== false,
    propagationHeadersDebug: cfg.propagationHeadersDebug === true,
    tracestateEntry: cfg.tracestateEntry !== false,
    batchSize: posInt(cfg.batchSize, 100),
    flushIntervalMs: posInt(cfg.flushIntervalMs, 1000),
    queueCapacity: posInt(cfg.queueCapacity, 10_000),
    maxClockComponents: posInt(cfg.maxClockComponents, 64),
    clockComponentTtlMs: posInt(cfg.clockComponentTtlMs, 15 * 60 * 1000),
    requestTimeoutMs: posInt(cfg.requestTimeoutMs, 5000),
    maxAttempts: posInt(cfg.maxAttempts, 5),
    retryBaseMs: posInt(cfg.retryBaseMs, 100),
    maxBackoffMs: posInt(cfg.maxBackoffMs, 10_000),
    captureLocation: cfg.captureLocation !== false,
    logger: cfg.logger && typeof cfg.logger.debug === 'function' ? cfg.logger : console,
    onEvent: typeof cfg.onEvent === 'function' ? cfg.onEvent : null,
  };
}

// Event model (spec/EVENTS.md) -----------------------------------------------------------------------------

export type SpanKind = 'server' | 'internal' | 'client' | 'producer' | 'consumer';
export type Access = 'read' | 'write' | 'atomic_read' | 'atomic_write' | 'atomic_rmw';
export type LockMode = 'exclusive' | 'shared';

export type EventKind =
  | {
      type: 'span_start';
      operation: string;
      span_kind: SpanKind;
      http?: { method: string; route: string | null; target: string };
      upstream?: { traceparent: 'valid' | 'absent' | 'invalid'; clock: string };
    }
  | { type: 'span_end'; operation: string; status_code?: number; error?: boolean }
  | { type: 'http_request'; method: string; route: string | null; target: string }
  | { type: 'http_response'; status: number }
  | { type: 'outbound_call'; child_span_id: string; protocol: string; method?: string; url?: string }
  | {
      type: 'outbound_response';
      child_span_id: string;
      status?: number;
      error?: string;
      callee?: { trace_id: string; span_id: string; service?: string; instance?: string };
    }
  | { type: 'function_call'; function: string; module?: string }
  | { type: 'async_spawn'; child_thread_id: string }
  | { type: 'async_await'; child_thread_id: string }
  | { type: 'state_change'; variable: string; access: Access; old_value?: unknown; new_value?: unknown }
  | { type: 'lock_acquire'; lock: string; mode: LockMode }
  | { type: 'lock_release'; lock: string; mode: LockMode }
  | { type: 'database_query'; query: string; database?: string }
  | { type: 'database_result'; rows?: number; error?: string }
  | { type: 'error'; error_type: string; message: string }
  | { type: 'custom'; name: string; data?: unknown };

export interface RacewayEvent {
  id: string;
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  thread_id: string;
  seq: number;
  service: string;
  instance: string;
  timestamp: string;
  duration_ns?: number;
  vector_clock: Array<[string, number]>;
  locks_held: Array<{ lock: string; mode: LockMode }>;
  location?: string;
  tags: Record<string, string>;
  kind: EventKind;
}
