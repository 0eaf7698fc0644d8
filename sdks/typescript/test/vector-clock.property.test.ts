import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compareClocks, MAX_COUNTER, mergeClocks, tickClock, VectorClock, type ClockPairs } from '../src/index.js';

const key = fc.constantFrom('a#1', 'b#1', 'c#2', 'd#3', 'é#1', '注文#東京-1', '𝒳#1', '\uffff#1');
const counter = fc.oneof(fc.nat(20), fc.constantFrom(MAX_COUNTER - 1, MAX_COUNTER));
const clock = fc
  .array(fc.tuple(key, counter), { maxLength: 8 })
  .map((pairs) => new VectorClock(pairs).toPairs());

const smallClock = fc
  .array(fc.tuple(key, fc.nat(20)), { maxLength: 8 })
  .map((pairs) => new VectorClock(pairs).toPairs());

const eq = (a: ClockPairs, b: ClockPairs) => compareClocks(a, b) === 'equal';
const runs = { numRuns: 500 };

describe('vector clock properties (fast-check)', () => {
  it('merge is commutative', () => {
    fc.assert(fc.property(clock, clock, (a, b) => eq(mergeClocks(a, b), mergeClocks(b, a))), runs);
  });
  it('merge is associative', () => {
    fc.assert(
      fc.property(clock, clock, clock, (a, b, c) => eq(mergeClocks(mergeClocks(a, b), c), mergeClocks(a, mergeClocks(b, c)))),
      runs,
    );
  });
  it('merge is idempotent', () => {
    fc.assert(fc.property(clock, (a) => eq(mergeClocks(a, a), a)), runs);
  });
  it('merge dominates both inputs', () => {
    fc.assert(
      fc.property(clock, clock, (a, b) => {
        const m = mergeClocks(a, b);
        return ['before', 'equal'].includes(compareClocks(a, m)) && ['before', 'equal'].includes(compareClocks(b, m));
      }),
      runs,
    );
  });
  it('happens-before is a strict partial order (irreflexive, asymmetric, transitive)', () => {
    fc.assert(
      fc.property(clock, clock, clock, (a, b, c) => {
        if (compareClocks(a, a) === 'before') return false;
        const ab = compareClocks(a, b);
        const ba = compareClocks(b, a);
        const flip = { before: 'after', after: 'before', equal: 'equal', concurrent: 'concurrent' } as const;
        if (ba !== flip[ab]) return false;
        if (ab === 'before' && compareClocks(b, c) === 'before' && compareClocks(a, c) !== 'before') return false;
        return true;
      }),
      runs,
    );
    // transitivity on chains actually built by ticks and merges
    fc.assert(
      fc.property(smallClock, key, smallClock, key, (a, k1, x, k2) => {
        const b = tickClock(a, k1);
        const c = tickClock(mergeClocks(b, x), k2);
        return compareClocks(a, b) === 'before' && compareClocks(b, c) === 'before' && compareClocks(a, c) === 'before';
      }),
      runs,
    );
  });
  it('tick strictly advances (or saturates at 2^53-1)', () => {
    fc.assert(
      fc.property(clock, key, (a, k) => {
        const t = tickClock(a, k);
        const before = new VectorClock(a).get(k);
        return before === MAX_COUNTER ? eq(t, a) : compareClocks(a, t) === 'before';
      }),
      runs,
    );
  });
  it('pairs are sorted bytewise (UTF-8) and unique', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }), fc.nat()), { maxLength: 10 }), (pairs) => {
        const out = new VectorClock(pairs).toPairs();
        for (let i = 1; i < out.length; i++) {
          if (Buffer.compare(Buffer.from(out[i - 1]![0]), Buffer.from(out[i]![0])) >= 0) return false;
        }
        return true;
      }),
      runs,
    );
  });
});

describe('bounded clock (PROPAGATION.md §3.3 drop rule)', () => {
  it('never drops the own component; stale first; then least recently advanced, smallest counter, smallest key', () => {
    const t0 = 1_000_000;
    const ttl = 15 * 60 * 1000;
    const c = new VectorClock();
    c.tick('own#1', t0 - 2 * ttl); // own is the stalest of all but must stay
    c.merge([['stale#1', 50]], t0 - ttl - 1);
    c.merge([['old#1', 1]], t0 - 1000);
    c.merge([['b#1', 5], ['a#1', 5], ['c#1', 2]], t0);
    c.merge([['fresh#1', 1]], t0 + 10);
    // 7 components, keep 4 -> drop stale#1, then old#1, then c#1 (smallest counter among the t0 ties)
    assert.equal(c.bound(4, 'own#1', ttl, t0 + 20), 3);
    assert.deepEqual(c.toPairs().map(([k]) => k), ['a#1', 'b#1', 'fresh#1', 'own#1']);
    // then the bytewise-smallest key among equal time and counter
    assert.equal(c.bound(3, 'own#1', ttl, t0 + 20), 1);
    assert.deepEqual(c.toPairs().map(([k]) => k), ['b#1', 'fresh#1', 'own#1']);
  });

  it('bound keeps at most max components and always the own one', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 4 }), fc.nat(9), fc.nat(5)), { maxLength: 40 }), fc.integer({ min: 1, max: 10 }), (ops, max) => {
        const c = new VectorClock();
        c.tick('own');
        for (const [k, n, t] of ops) c.merge([[k, n]], t);
        c.bound(max, 'own', 100);
        return c.size <= Math.max(max, 1) && c.get('own') === 1;
      }),
      runs,
    );
  });
});
