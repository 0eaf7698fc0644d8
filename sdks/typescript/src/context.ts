import type { LockMode } from './config.js';
import type { ClockStatus, TracestateMember } from './propagation.js';

/** What a server span received from upstream. */
export interface UpstreamInfo {
  traceparent: 'valid' | 'absent' | 'invalid';
  /** The received traceparent parent-id (the caller's id for this call), or null. */
  parentId: string | null;
  clockStatus: ClockStatus;
}
import { VectorClock } from './vectorClock.js';

/**
 * One logical thread of a trace: the state the current async execution holds. Each forked task gets its own
 * instance (no mutable state is shared between concurrent tasks).
 */
export class ThreadContext {
  /** Number of tasks forked from this thread so far (for `<thread>.<n>` ids). */
  children = 0;
  seq = 0;
  readonly locks: Array<{ lock: string; mode: LockMode }> = [];
  /** Set on server spans (and inherited by forks). */
  upstream: UpstreamInfo | null = null;

  constructor(
    /** 32 lowercase hex. */
    readonly traceId: string,
    /** UUID text of traceId. */
    readonly traceUuid: string,
    /** The span this thread belongs to (a server request's own span). */
    readonly spanId: string,
    /** The span's parent: the upstream call id, or null. */
    readonly parentSpanId: string | null,
    readonly flags: number,
    readonly tracestate: readonly TracestateMember[],
    readonly threadId: string,
    readonly clock: VectorClock,
  ) {}

  /** Reserves the next child thread id `<thread>.<n>`. */
  nextChildThreadId(): string {
    this.children += 1;
    return `${this.threadId}.${this.children}`;
  }

  /** A child logical thread with a copy of the current clock. */
  forkAs(threadId: string): ThreadContext {
    const child = new ThreadContext(
      this.traceId,
      this.traceUuid,
      this.spanId,
      this.parentSpanId,
      this.flags,
      this.tracestate,
      threadId,
      this.clock.clone(),
    );
    child.upstream = this.upstream;
    return child;
  }
}

/** Read-only view of the current context. */
export interface RacewayContext {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  threadId: string;
  /** The next sequence number on this thread. */
  seq: number;
  flags: number;
  tracestate: Array<[string, string]>;
  clock: Array<[string, number]>;
  locksHeld: Array<{ lock: string; mode: LockMode }>;
  /** For server spans: what was received from upstream. */
  upstream: UpstreamInfo | null;
}

export function snapshot(c: ThreadContext): RacewayContext {
  return {
    traceId: c.traceId,
    spanId: c.spanId,
    parentSpanId: c.parentSpanId,
    threadId: c.threadId,
    seq: c.seq,
    flags: c.flags,
    tracestate: c.tracestate.map(([k, v]) => [k, v]),
    clock: c.clock.toPairs(),
    locksHeld: c.locks.map((l) => ({ ...l })),
    upstream: c.upstream ? { ...c.upstream } : null,
  };
}
