import { compareUtf8 } from './bytes.js';

/** Largest counter value (2^53 − 1); ticks saturate here. */
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

export type ClockPairs = Array<[string, number]>;
export type ClockOrder = 'before' | 'after' | 'equal' | 'concurrent';

interface Component {
  n: number;
  /** Wall time (ms) when this component last advanced in this clock. */
  at: number;
}

/**
 * A sparse vector clock `key -> counter` (missing key = 0) that also remembers when each component last advanced,
 * for the bounded drop rule of PROPAGATION.md §3.3.
 */
export class VectorClock {
  private readonly c: Map<string, Component>;

  constructor(pairs?: Iterable<readonly [string, number]>, now: number = Date.now()) {
    this.c = new Map();
    if (pairs) {
      for (const [k, n] of pairs) {
        const cur = this.c.get(k);
        if (!cur) this.c.set(k, { n, at: now });
        else if (n > cur.n) cur.n = n;
      }
    }
  }

  static fromPairs(pairs: Iterable<readonly [string, number]>): VectorClock {
    return new VectorClock(pairs);
  }

  get size(): number {
    return this.c.size;
  }

  get(key: string): number {
    return this.c.get(key)?.n ?? 0;
  }

  clone(): VectorClock {
    const out = new VectorClock();
    for (const [k, v] of this.c) out.c.set(k, { n: v.n, at: v.at });
    return out;
  }

  /** counter(key) += 1, saturating at 2^53 − 1. */
  tick(key: string, now: number = Date.now()): this {
    const cur = this.c.get(key);
    if (!cur) this.c.set(key, { n: 1, at: now });
    else {
      if (cur.n < MAX_COUNTER) cur.n += 1;
      cur.at = now;
    }
    return this;
  }

  /** Element-wise maximum (in place). Components that advance get `now` as their last-advanced time. */
  merge(other: VectorClock | Iterable<readonly [string, number]>, now: number = Date.now()): this {
    const entries: Iterable<readonly [string, number]> =
      other instanceof VectorClock ? other.pairsUnsorted() : other;
    for (const [k, n] of entries) {
      const cur = this.c.get(k);
      if (!cur) this.c.set(k, { n, at: now });
      else if (n > cur.n) {
        cur.n = n;
        cur.at = now;
      }
    }
    return this;
  }

  /**
   * Keeps at most `max` components (PROPAGATION.md §3.3): never drops `ownKey`; drops first the components not
   * advanced for longer than `ttlMs`, then the least recently advanced (ties: smallest counter, then bytewise
   * smallest key). Returns the number of components dropped.
   */
  bound(max: number, ownKey: string | null, ttlMs: number, now: number = Date.now()): number {
    const excess = this.c.size - Math.max(max, 1);
    if (excess <= 0) return 0;
    const candidates: Array<[string, Component]> = [];
    for (const e of this.c) if (e[0] !== ownKey) candidates.push(e);
    candidates.sort((x, y) => {
      const xs = now - x[1].at > ttlMs ? 0 : 1;
      const ys = now - y[1].at > ttlMs ? 0 : 1;
      if (xs !== ys) return xs - ys;
      if (x[1].at !== y[1].at) return x[1].at - y[1].at;
      if (x[1].n !== y[1].n) return x[1].n - y[1].n;
      return compareUtf8(x[0], y[0]);
    });
    const drop = Math.min(excess, candidates.length);
    for (let i = 0; i < drop; i++) this.c.delete(candidates[i]![0]);
    return drop;
  }

  private *pairsUnsorted(): IterableIterator<[string, number]> {
    for (const [k, v] of this.c) yield [k, v.n];
  }

  /** `[[key, counter], ...]` sorted by key bytewise. */
  toPairs(): ClockPairs {
    const out: ClockPairs = [];
    for (const [k, v] of this.c) out.push([k, v.n]);
    if (out.length > 1) out.sort((a, b) => compareUtf8(a[0], b[0]));
    return out;
  }

  toJSON(): ClockPairs {
    return this.toPairs();
  }

  compare(other: VectorClock): ClockOrder {
    return compareClocks(this.toPairs(), other.toPairs());
  }
}

function toMap(a: Iterable<readonly [string, number]>): Map<string, number> {
  const m = new Map<string, number>();
  for (const [k, n] of a) m.set(k, Math.max(m.get(k) ?? 0, n));
  return m;
}

/** `compare(a, b)` per PROPAGATION.md §4. */
export function compareClocks(
  a: Iterable<readonly [string, number]>,
  b: Iterable<readonly [string, number]>,
): ClockOrder {
  const ma = toMap(a);
  const mb = toMap(b);
  let aLess = false; // some component a < b
  let bLess = false; // some component b < a
  for (const [k, x] of ma) {
    const y = mb.get(k) ?? 0;
    if (x < y) aLess = true;
    else if (x > y) bLess = true;
  }
  for (const [k, y] of mb) {
    if (ma.has(k)) continue;
    if (y > 0) aLess = true;
  }
  if (aLess && bLess) return 'concurrent';
  if (aLess) return 'before';
  if (bLess) return 'after';
  return 'equal';
}

/** Element-wise maximum as sorted pairs. */
export function mergeClocks(
  a: Iterable<readonly [string, number]>,
  b: Iterable<readonly [string, number]>,
): ClockPairs {
  return new VectorClock(a).merge(b).toPairs();
}

/** Tick `key` as sorted pairs. */
export function tickClock(a: Iterable<readonly [string, number]>, key: string): ClockPairs {
  return new VectorClock(a).tick(key).toPairs();
}
