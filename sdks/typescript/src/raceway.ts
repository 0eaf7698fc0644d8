import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  resolveConfig,
  type Access,
  type EventKind,
  type LockMode,
  type RacewayConfig,
  type RacewayEvent,
  type ResolvedConfig,
} from './config.js';
import { snapshot, ThreadContext, type RacewayContext } from './context.js';
import { Exporter } from './exporter.js';
import { newEventId, newSpanId, newTraceId, traceIdToUuid } from './ids.js';
import { callerLocation } from './location.js';
import {
  decodeClock,
  encodeClock,
  extractFromValues,
  inject,
  RACEWAY_CLOCK,
  TRACEPARENT,
  TRACESTATE,
  type ClockPayload,
  type Extracted,
} from './propagation.js';
import { newStats, type Stats } from './stats.js';
import { durationNs, monoNs, timestampNow } from './time.js';
import { VectorClock } from './vectorClock.js';
import { zstd } from './zstd.js';

/** Minimal Express request/response shapes (no runtime dependency on express). */
export type MiddlewareRequest = IncomingMessage & {
  originalUrl?: string;
  baseUrl?: string;
  route?: { path?: unknown };
};
export type Middleware = (req: MiddlewareRequest, res: ServerResponse, next: (err?: unknown) => void) => void;

/** Minimal axios instance shape (no runtime dependency on axios). */
export interface AxiosLike {
  interceptors: {
    request: { use(onFulfilled: (config: any) => any, onRejected?: (error: any) => any): number };
    response: { use(onFulfilled: (response: any) => any, onRejected?: (error: any) => any): number };
  };
}

interface OutboundState {
  ctx: ThreadContext;
  childSpanId: string;
  /** Set when the call was made outside any context: the root span started for it. */
  root: { operation: string; start: bigint } | null;
}

/** The URL recorded in `outbound_call`: no credentials, query or fragment. */
export function recordedUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.href;
  } catch {
    const cut = url.search(/[?#]/);
    return cut < 0 ? url : url.slice(0, cut);
  }
}

const CLOCK_ERRORS = new Set(['too_long', 'unsupported_version', 'malformed', 'too_large', 'too_many_components']);
const AXIOS_STATE = '__racewayOutbound';

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`.slice(0, 4096);
  try {
    return String(e).slice(0, 4096);
  } catch {
    return 'unknown error';
  }
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

export class Raceway {
  readonly config: ResolvedConfig;
  private readonly ownKey: string;
  private readonly als = new AsyncLocalStorage<ThreadContext>();
  private readonly statsCounters: Stats = newStats();
  private readonly exporter: Exporter | null;
  /** Whether events are built at all (an exporter or an onEvent hook exists). */
  private readonly capturing: boolean;
  /** Whether tracking-API events get a caller location. */
  private readonly locating: boolean;

  constructor(config: RacewayConfig = {}) {
    this.config = resolveConfig(config);
    this.ownKey = `${this.config.serviceName}#${this.config.instanceId}`;
    let exporter: Exporter | null = null;
    if (this.config.endpoint) {
      try {
        exporter = new Exporter(this.config, this.statsCounters);
      } catch (e) {
        this.config.logger.warn(`raceway: exporter disabled: ${describeError(e)}`);
      }
    }
    this.exporter = exporter;
    this.capturing = exporter !== null || this.config.onEvent !== null;
    this.locating = this.capturing && this.config.captureLocation;
    // Compile the zstd WebAssembly module off the first request's path.
    if (this.config.propagationEnabled) setImmediate(() => void zstd()).unref();
  }

  /** `service#instance`: this process's vector-clock component. */
  get clockKey(): string {
    return this.ownKey;
  }

  // ------------------------------------------------------------------------------------------ context / events

  /** The current context (or undefined outside any request/trace). */
  currentContext(): RacewayContext | undefined {
    const c = this.als.getStore();
    return c ? snapshot(c) : undefined;
  }

  private newRootContext(): ThreadContext {
    const traceId = newTraceId();
    const spanId = newSpanId();
    return new ThreadContext(traceId, traceIdToUuid(traceId), spanId, null, 0x03, [], spanId, new VectorClock());
  }

  private bound(ctx: ThreadContext): void {
    if (ctx.clock.size > this.config.maxClockComponents) {
      this.statsCounters.clock_components_dropped += ctx.clock.bound(
        this.config.maxClockComponents,
        this.ownKey,
        this.config.clockComponentTtlMs,
      );
    }
  }

  /** Ticks, advances seq and (when capturing) builds + emits the event. */
  private record(
    ctx: ThreadContext,
    kind: EventKind,
    opts?: { durationNs?: number; location?: string; tags?: Record<string, string>; defer?: boolean },
  ): RacewayEvent | null {
    ctx.clock.tick(this.ownKey);
    this.bound(ctx);
    const seq = ctx.seq++;
    if (!this.capturing) return null;
    const e: RacewayEvent = {
      id: newEventId(),
      trace_id: ctx.traceUuid,
      span_id: ctx.spanId,
      parent_span_id: ctx.parentSpanId,
      thread_id: ctx.threadId,
      seq,
      service: this.config.serviceName,
      instance: this.config.instanceId,
      timestamp: timestampNow(),
      vector_clock: ctx.clock.toPairs(),
      locks_held: ctx.locks.map((l) => ({ lock: l.lock, mode: l.mode })),
      tags: opts?.tags ?? {},
      kind,
    };
    if (opts?.durationNs !== undefined) e.duration_ns = opts.durationNs;
    if (opts?.location !== undefined) e.location = opts.location;
    if (!opts?.defer) this.emit(e);
    return e;
  }

  private emit(e: RacewayEvent): void {
    const hook = this.config.onEvent;
    if (hook) {
      try {
        hook(e);
      } catch {
        /* a hook never breaks the host */
      }
    }
    this.exporter?.enqueue(e);
  }

  private debug(msg: string): void {
    if (!this.config.propagationHeadersDebug) return;
    try {
      this.config.logger.debug(`raceway: ${msg}`);
    } catch {
      /* ignore */
    }
  }

  private countExtraction(ex: Extracted): void {
    const s = this.statsCounters;
    if (ex.traceparent.status === 'invalid') {
      s.header_parse_errors++;
      s.traceparent_errors++;
    }
    if (ex.tracestateError) {
      s.header_parse_errors++;
      s.tracestate_errors++;
    }
    if (CLOCK_ERRORS.has(ex.clockStatus)) {
      s.header_parse_errors++;
      s.clock_errors++;
    }
    if (ex.clockStatus === 'conflict') s.clock_conflicts++;
    if (ex.traceparent.status === 'valid' && ex.clockStatus === 'absent') s.partial_spans++;
  }

  /**
   * Starts a server span from incoming headers (`[name, value]` lines): continues the trace on a valid
   * traceparent (new own span id), merges the incoming clock (status ok/reparented) and ticks.
   */
  private contextFromHeaders(tp: string[], ts: string[], rc: string[]): { ctx: ThreadContext; ex: Extracted } {
    const ex = extractFromValues(tp, ts, rc);
    this.countExtraction(ex);
    let ctx: ThreadContext;
    const spanId = newSpanId();
    if (ex.traceparent.status === 'valid') {
      const { traceId, parentId, flags } = ex.traceparent.value;
      const parent = ex.clockStatus === 'reparented' && ex.clock ? ex.clock.span_id : parentId;
      const clock = new VectorClock();
      if (ex.clock) clock.merge(ex.clock.clock);
      ctx = new ThreadContext(traceId, traceIdToUuid(traceId), spanId, parent, flags, ex.tracestate, spanId, clock);
    } else {
      const traceId = newTraceId();
      ctx = new ThreadContext(traceId, traceIdToUuid(traceId), spanId, null, 0x03, [], spanId, new VectorClock());
    }
    this.bound(ctx);
    return { ctx, ex };
  }

  // ------------------------------------------------------------------------------------------ server middleware

  /** Express (or any connect-style) middleware: `app.use(raceway.middleware())`. */
  middleware(): Middleware {
    return (req, res, next) => {
      if (!this.config.propagationEnabled) return next();
      let ctx: ThreadContext;
      try {
        ctx = this.beginServerSpan(req, res);
      } catch (e) {
        this.debug(`middleware setup failed: ${describeError(e)}`);
        return next();
      }
      this.als.run(ctx, next);
    };
  }

  /** Wraps a plain `node:http` request listener. */
  wrapHandler<H extends (req: IncomingMessage, res: ServerResponse) => unknown>(handler: H): H {
    const mw = this.middleware();
    return ((req: IncomingMessage, res: ServerResponse) => {
      mw(req, res, () => handler(req, res));
    }) as unknown as H;
  }

  private beginServerSpan(req: MiddlewareRequest, res: ServerResponse): ThreadContext {
    const start = monoNs();
    this.statsCounters.requests++;
    const tp: string[] = [];
    const ts: string[] = [];
    const rc: string[] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      const len = name.length;
      if (len !== 11 && len !== 10 && len !== 13) continue;
      const lower = name.toLowerCase();
      if (lower === TRACEPARENT) tp.push(raw[i + 1]!);
      else if (lower === TRACESTATE) ts.push(raw[i + 1]!);
      else if (lower === RACEWAY_CLOCK) rc.push(raw[i + 1]!);
    }
    const { ctx, ex } = this.contextFromHeaders(tp, ts, rc);
    if (this.config.propagationHeadersDebug) {
      this.debug(
        `received traceparent=${JSON.stringify(tp)} tracestate=${JSON.stringify(ts)} raceway-clock=${JSON.stringify(rc)} ` +
          `-> traceparent ${ex.traceparent.status}${ex.traceparent.status === 'invalid' ? `(${ex.traceparent.error})` : ''}` +
          `, tracestate ${ex.tracestateError ?? 'ok'}, clock ${ex.clockStatus}`,
      );
    }
    const method = req.method ?? 'GET';
    const target = req.originalUrl ?? req.url ?? '/';
    const receivedParent = ex.traceparent.status === 'valid' ? ex.traceparent.value.parentId : null;
    ctx.upstream = { traceparent: ex.traceparent.status, parentId: receivedParent, clockStatus: ex.clockStatus };
    const partial = ex.traceparent.status === 'valid' && ex.clockStatus === 'absent';
    const upstream = {
      traceparent: ex.traceparent.status,
      clock: ex.clockStatus,
    } as const;
    const startEvent = this.record(
      ctx,
      {
        type: 'span_start',
        operation: `${method} ${pathOf(target)}`,
        span_kind: 'server',
        http: { method, route: null, target },
        upstream,
      },
      { defer: true, tags: partial ? { partial: 'true' } : {} },
    );

    let finished = false;
    const finish = (status: number, sendHeader: boolean, error: boolean) => {
      if (finished) return;
      finished = true;
      let route: string | null = null;
      const r = req.route?.path;
      if (typeof r === 'string') route = `${req.baseUrl ?? ''}${r}`;
      const operation = `${method} ${route ?? pathOf(target)}`.slice(0, 256);
      if (startEvent && startEvent.kind.type === 'span_start') {
        startEvent.kind.operation = operation;
        startEvent.kind.http = { method, route, target };
        this.emit(startEvent);
      }
      const st = Number.isInteger(status) && status >= 100 && status <= 999 ? status : 500;
      // Exactly span_start + span_end per inbound request (EVENTS.md): span_end carries what http_response
      // used to (status_code, duration_ns, error for 5xx). The response clock below is encoded after the
      // span_end tick, so it includes it.
      this.record(
        ctx,
        { type: 'span_end', operation, status_code: st, error: error || st >= 500 },
        { durationNs: durationNs(start) },
      );
      if (sendHeader) {
        try {
          const header = encodeClock({
            trace_id: ctx.traceUuid,
            span_id: ctx.spanId,
            parent_span_id: receivedParent,
            service: this.config.serviceName,
            instance: this.config.instanceId,
            clock: ctx.clock.toPairs(),
            flags: partial ? ['partial'] : [],
          });
          res.setHeader(RACEWAY_CLOCK, header);
          this.debug(`sent response raceway-clock=${header}`);
        } catch (e) {
          this.debug(`response clock header failed: ${describeError(e)}`);
        }
      }
    };

    const origWriteHead = res.writeHead;
    res.writeHead = function writeHead(this: ServerResponse, ...args: unknown[]) {
      try {
        if (!res.headersSent) {
          const code = typeof args[0] === 'number' ? args[0] : res.statusCode;
          finish(code, true, false);
        }
      } catch {
        /* never break the response */
      }
      return (origWriteHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as typeof res.writeHead;
    res.once('close', () => {
      if (!finished) finish(res.statusCode, false, !res.writableFinished);
    });
    return ctx;
  }

  // ------------------------------------------------------------------------------------------ client propagation

  /** Starts an outgoing call: returns the headers to add (never throws). */
  private beginOutbound(method: string, url: string): { state: OutboundState; headers: Array<[string, string]> } {
    let ctx = this.als.getStore();
    let root: OutboundState['root'] = null;
    if (!ctx) {
      // Outside any context: a new trace (W3C) whose root is an internal span around this call.
      ctx = this.newRootContext();
      root = { operation: `HTTP ${method}`.slice(0, 256), start: monoNs() };
      this.record(ctx, { type: 'span_start', operation: root.operation, span_kind: 'internal' });
    }
    const childSpanId = newSpanId();
    this.statsCounters.outbound_calls++;
    this.record(ctx, {
      type: 'outbound_call',
      child_span_id: childSpanId,
      protocol: 'http',
      method,
      url: recordedUrl(url),
    });
    const clock: ClockPayload = {
      trace_id: ctx.traceUuid,
      span_id: childSpanId,
      parent_span_id: ctx.spanId,
      service: this.config.serviceName,
      instance: this.config.instanceId,
      clock: ctx.clock.toPairs(),
      flags: [],
    };
    const headers = inject({
      traceId: ctx.traceId,
      spanId: childSpanId,
      flags: ctx.flags,
      tracestate: ctx.tracestate,
      tracestateEntry: this.config.tracestateEntry,
      clock,
    });
    if (this.config.propagationHeadersDebug) this.debug(`sent ${method} ${url} ${JSON.stringify(headers)}`);
    return { state: { ctx, childSpanId, root }, headers };
  }

  private endOutbound(state: OutboundState, status: number | undefined, clockHeader: string | null, error?: unknown): void {
    const { ctx, childSpanId } = state;
    let callee: { trace_id: string; span_id: string; service: string; instance: string } | undefined;
    if (clockHeader) {
      const r = decodeClock(clockHeader);
      if (r.ok) {
        ctx.clock.merge(r.payload.clock);
        this.bound(ctx);
        callee = {
          trace_id: r.payload.trace_id,
          span_id: r.payload.span_id,
          service: r.payload.service,
          instance: r.payload.instance,
        };
      } else {
        this.statsCounters.header_parse_errors++;
        this.statsCounters.clock_errors++;
        this.debug(`ignored response raceway-clock (${r.error})`);
      }
    }
    const kind: EventKind = { type: 'outbound_response', child_span_id: childSpanId };
    if (status !== undefined && Number.isInteger(status)) kind.status = status;
    if (error !== undefined) kind.error = describeError(error);
    if (callee) kind.callee = callee;
    this.record(ctx, kind);
    if (state.root) {
      const failed = error !== undefined || (status !== undefined && status >= 500);
      this.record(
        ctx,
        { type: 'span_end', operation: state.root.operation, error: failed },
        { durationNs: durationNs(state.root.start) },
      );
    }
  }

  /** `fetch` with Raceway propagation (uses `globalThis.fetch`). */
  readonly fetch: typeof fetch = this.wrapFetch((input, init) => globalThis.fetch(input, init));

  /** Wraps a fetch implementation so each call propagates the current context. */
  wrapFetch(fetchImpl: typeof fetch): typeof fetch {
    const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      if (!this.config.propagationEnabled) return fetchImpl(input, init);
      let begun: { state: OutboundState; headers: Array<[string, string]> };
      let nextInit: RequestInit;
      try {
        const isRequest = typeof Request !== 'undefined' && input instanceof Request;
        const method = (init?.method ?? (isRequest ? (input as Request).method : 'GET')).toUpperCase();
        const url = isRequest ? (input as Request).url : input instanceof URL ? input.href : String(input);
        const headers = new Headers(init?.headers ?? (isRequest ? (input as Request).headers : undefined));
        begun = this.beginOutbound(method, url);
        for (const [k, v] of begun.headers) headers.set(k, v);
        if (!begun.headers.some(([k]) => k === TRACESTATE)) headers.delete(TRACESTATE);
        nextInit = { ...init, headers };
      } catch (e) {
        this.debug(`fetch propagation skipped: ${describeError(e)}`);
        return fetchImpl(input, init);
      }
      let res: Response;
      try {
        res = await fetchImpl(input, nextInit);
      } catch (e) {
        try {
          this.endOutbound(begun.state, undefined, null, e);
        } catch {
          /* ignore */
        }
        throw e;
      }
      try {
        this.endOutbound(begun.state, res.status, res.headers.get(RACEWAY_CLOCK));
      } catch {
        /* ignore */
      }
      return res;
    };
    return wrapped as typeof fetch;
  }

  /** Adds request/response interceptors to an axios instance. Returns the instance. */
  instrumentAxios<T extends AxiosLike>(axiosInstance: T): T {
    axiosInstance.interceptors.request.use((config: any) => {
      if (!this.config.propagationEnabled || !config) return config;
      try {
        const method = String(config.method ?? 'get').toUpperCase();
        let url = String(config.url ?? '');
        if (config.baseURL && !/^[a-z][a-z0-9+.-]*:/i.test(url)) {
          url = `${String(config.baseURL).replace(/\/+$/, '')}/${url.replace(/^\/+/, '')}`;
        }
        const begun = this.beginOutbound(method, url);
        const h = config.headers;
        const hasTs = begun.headers.some(([k]) => k === TRACESTATE);
        if (h && typeof h.set === 'function') {
          for (const [k, v] of begun.headers) h.set(k, v);
          if (!hasTs && typeof h.delete === 'function') h.delete(TRACESTATE);
        } else {
          config.headers = { ...(h ?? {}) };
          for (const [k, v] of begun.headers) config.headers[k] = v;
          if (!hasTs) delete config.headers[TRACESTATE];
        }
        Object.defineProperty(config, AXIOS_STATE, { value: begun.state, enumerable: false, configurable: true });
      } catch (e) {
        this.debug(`axios propagation skipped: ${describeError(e)}`);
      }
      return config;
    });
    const headerOf = (res: any): string | null => {
      const h = res?.headers;
      if (!h) return null;
      const v = typeof h.get === 'function' ? h.get(RACEWAY_CLOCK) : h[RACEWAY_CLOCK];
      return typeof v === 'string' ? v : null;
    };
    axiosInstance.interceptors.response.use(
      (res: any) => {
        const state = res?.config?.[AXIOS_STATE] as OutboundState | undefined;
        if (state) {
          try {
            this.endOutbound(state, res.status, headerOf(res));
          } catch {
            /* ignore */
          }
        }
        return res;
      },
      (err: any) => {
        const state = err?.config?.[AXIOS_STATE] as OutboundState | undefined;
        if (state) {
          try {
            const res = err.response;
            this.endOutbound(state, res?.status, headerOf(res), res ? undefined : err);
          } catch {
            /* ignore */
          }
        }
        return Promise.reject(err);
      },
    );
    return axiosInstance;
  }

  // ------------------------------------------------------------------------------------------ traces & forks

  /** Runs `fn` as the root of a new trace (an `internal` span), e.g. for a background job. */
  async runInTrace<T>(operation: string, fn: () => T | Promise<T>): Promise<T> {
    const ctx = this.newRootContext();
    const start = monoNs();
    const op = (operation || 'trace').slice(0, 256);
    this.record(ctx, { type: 'span_start', operation: op, span_kind: 'internal' });
    let failed = false;
    try {
      return await this.als.run(ctx, async () => fn());
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      this.record(ctx, { type: 'span_end', operation: op, error: failed }, { durationNs: durationNs(start) });
    }
  }

  private spawn(parent: ThreadContext): ThreadContext {
    const id = parent.nextChildThreadId();
    this.record(parent, { type: 'async_spawn', child_thread_id: id });
    // The child starts from the clock *after* the spawn event, so spawn -> child's first event is visible.
    return parent.forkAs(id);
  }

  private join(parent: ThreadContext, child: ThreadContext): void {
    parent.clock.merge(child.clock);
    this.bound(parent);
    this.record(parent, { type: 'async_await', child_thread_id: child.threadId });
  }

  /**
   * Runs `fn` as a forked logical thread (`<thread>.<n>`, own seq from 0, a copy of the clock). Records
   * `async_spawn` now and `async_await` (merging the child's clock) when it settles.
   */
  fork<T>(fn: () => T | Promise<T>): Promise<T> {
    const parent = this.als.getStore();
    if (!parent) return (async () => fn())();
    const child = this.spawn(parent);
    const p = this.als.run(child, async () => fn());
    return p.then(
      (v) => {
        this.join(parent, child);
        return v;
      },
      (e) => {
        this.join(parent, child);
        throw e;
      },
    );
  }

  /** `Promise.all` over forked branches: each function runs on its own logical thread. */
  async all<T extends readonly (() => unknown)[]>(
    fns: T,
  ): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }> {
    const parent = this.als.getStore();
    if (!parent) return (await Promise.all(fns.map((f) => f()))) as any;
    const children = fns.map(() => this.spawn(parent));
    const runs = fns.map((f, i) => this.als.run(children[i]!, async () => f()));
    const settled = await Promise.allSettled(runs);
    for (const c of children) this.join(parent, c);
    const out: unknown[] = [];
    for (const s of settled) {
      if (s.status === 'rejected') throw s.reason;
      out.push(s.value);
    }
    return out as any;
  }

  // ------------------------------------------------------------------------------------------ tracking API

  /** Records a `state_change` on `variable` (name shared resources globally, e.g. `account:42`). */
  trackStateChange(
    variable: string,
    access: Access = 'write',
    values: { oldValue?: unknown; newValue?: unknown } = {},
  ): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    const kind: EventKind = { type: 'state_change', variable: String(variable).slice(0, 256) || '?', access };
    if ('oldValue' in values) kind.old_value = values.oldValue ?? null;
    if ('newValue' in values) kind.new_value = values.newValue ?? null;
    this.record(ctx, kind, { location: this.locating ? callerLocation(this.trackStateChange) : undefined });
  }

  /** Shorthand for a `read` state change. */
  trackRead(variable: string, value?: unknown): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    const kind: EventKind = { type: 'state_change', variable: String(variable).slice(0, 256) || '?', access: 'read' };
    if (arguments.length > 1) kind.new_value = value ?? null;
    this.record(ctx, kind, { location: this.locating ? callerLocation(this.trackRead) : undefined });
  }

  /** Shorthand for a `write` state change. */
  trackWrite(variable: string, oldValue: unknown, newValue: unknown): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    this.record(
      ctx,
      {
        type: 'state_change',
        variable: String(variable).slice(0, 256) || '?',
        access: 'write',
        old_value: oldValue ?? null,
        new_value: newValue ?? null,
      },
      { location: this.locating ? callerLocation(this.trackWrite) : undefined },
    );
  }

  /** Wraps `fn`: each call is timed and recorded as `function_call` (sync or async). */
  trackFunction<A extends unknown[], R>(
    fn: (...args: A) => R,
    opts: { name?: string; module?: string } = {},
  ): (...args: A) => R {
    const name = (opts.name ?? fn.name ?? 'anonymous').slice(0, 256) || 'anonymous';
    const self = this;
    const wrapped = function (this: unknown, ...args: A): R {
      const ctx = self.als.getStore();
      if (!ctx) return fn.apply(this, args);
      const location = self.locating ? callerLocation(wrapped) : undefined;
      const start = monoNs();
      const done = () => {
        const kind: EventKind = { type: 'function_call', function: name };
        if (opts.module) kind.module = opts.module;
        self.record(ctx, kind, { durationNs: durationNs(start), location });
      };
      let result: R;
      try {
        result = fn.apply(this, args);
      } catch (e) {
        done();
        throw e;
      }
      if (result && typeof (result as any).then === 'function') {
        return (result as any).then(
          (v: unknown) => {
            done();
            return v;
          },
          (e: unknown) => {
            done();
            throw e;
          },
        ) as R;
      }
      done();
      return result;
    };
    return wrapped;
  }

  /** Records `lock_acquire` (call right after acquiring); `locks_held` then includes the lock. */
  trackLockAcquire(lock: string, mode: LockMode = 'exclusive'): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    ctx.locks.push({ lock, mode });
    if (ctx.locks.length > 64) ctx.locks.shift();
    this.record(ctx, { type: 'lock_acquire', lock, mode }, { location: this.locating ? callerLocation(this.trackLockAcquire) : undefined });
  }

  /** Records `lock_release` (call right before releasing); `locks_held` still includes the lock. */
  trackLockRelease(lock: string, mode: LockMode = 'exclusive'): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    if (!ctx.locks.some((l) => l.lock === lock && l.mode === mode)) ctx.locks.push({ lock, mode });
    this.record(ctx, { type: 'lock_release', lock, mode }, { location: this.locating ? callerLocation(this.trackLockRelease) : undefined });
    const i = ctx.locks.findIndex((l) => l.lock === lock && l.mode === mode);
    if (i >= 0) ctx.locks.splice(i, 1);
  }

  /** A tracked async mutex named `name` (name shared resources globally, e.g. `account:42`). */
  mutex(name: string): TrackedMutex {
    return new TrackedMutex(this, name);
  }

  trackError(error: unknown, errorType?: string): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    const type =
      errorType ?? (error instanceof Error ? error.name || error.constructor?.name || 'Error' : typeof error);
    const message = error instanceof Error ? error.message : describeError(error);
    this.record(
      ctx,
      { type: 'error', error_type: (type || 'Error').slice(0, 256), message: message.slice(0, 4096) },
      { location: this.locating ? callerLocation(this.trackError) : undefined },
    );
  }

  trackCustom(name: string, data?: unknown): void {
    const ctx = this.als.getStore();
    if (!ctx) return;
    const kind: EventKind = { type: 'custom', name: String(name).slice(0, 256) || 'custom' };
    if (data !== undefined) kind.data = data;
    this.record(ctx, kind, { location: this.locating ? callerLocation(this.trackCustom) : undefined });
  }

  // ------------------------------------------------------------------------------------------ exporter

  stats(): Stats {
    return { ...this.statsCounters, events_queued: this.exporter?.queued ?? 0 };
  }

  /** Sends what is queued (bounded by `timeoutMs`). */
  async flush(timeoutMs = 5000): Promise<void> {
    await this.exporter?.flush(timeoutMs);
  }

  /** Flushes with a deadline and stops the background sender. */
  async shutdown(timeoutMs = 5000): Promise<void> {
    await this.exporter?.shutdown(timeoutMs);
  }
}

/** An async mutex that records `lock_acquire` / `lock_release` and maintains `locks_held`. */
export class TrackedMutex {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly raceway: Raceway,
    readonly name: string,
  ) {}

  get isLocked(): boolean {
    return this.locked;
  }

  async acquire(): Promise<void> {
    if (this.locked) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.locked = true;
    this.raceway.trackLockAcquire(this.name, 'exclusive');
  }

  release(): void {
    if (!this.locked) return;
    this.raceway.trackLockRelease(this.name, 'exclusive');
    const next = this.waiters.shift();
    if (next) next(); // ownership passes directly to the next waiter
    else this.locked = false;
  }

  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
