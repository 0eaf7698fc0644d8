import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compareClocks,
  decodeClock,
  encodeClock,
  extract,
  flagsHex,
  formatTracestate,
  mergeClocks,
  parseTraceparent,
  parseTracestate,
  tickClock,
  type ClockPayload,
} from '../src/index.js';
import { loadVectors } from './helpers.js';

/** Canonical JSON value of a clock payload (PROPAGATION.md §3.2): clock sorted bytewise, nulls/[] filled in. */
function canonical(p: any): ClockPayload | null {
  if (p === null || p === undefined) return null;
  const clock = [...p.clock].sort((a: [string, number], b: [string, number]) =>
    Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])),
  );
  return {
    trace_id: p.trace_id,
    span_id: p.span_id,
    parent_span_id: p.parent_span_id ?? null,
    service: p.service,
    instance: p.instance,
    clock,
    flags: p.flags ?? [],
  };
}

describe('traceparent.json', () => {
  const v = loadVectors('traceparent.json');
  assert.ok(v.cases.length > 0);
  for (const c of v.cases) {
    it(c.name, () => {
      const r = parseTraceparent(c.lines);
      if (c.valid) {
        assert.equal(r.status, 'valid', JSON.stringify(r));
        if (r.status !== 'valid') return;
        assert.equal(r.value.traceId, c.trace_id);
        assert.equal(r.value.parentId, c.parent_id);
        assert.equal(flagsHex(r.value.flags), c.flags);
      } else if (c.error === 'absent') {
        assert.equal(r.status, 'absent');
      } else {
        assert.deepEqual(r, { status: 'invalid', error: c.error });
      }
    });
  }
});

describe('tracestate.json', () => {
  const v = loadVectors('tracestate.json');
  assert.ok(v.cases.length > 0 && v.mutations.length > 0);
  for (const c of v.cases) {
    it(`parse: ${c.name}`, () => {
      const r = parseTracestate(c.lines);
      if (c.valid) assert.deepEqual(r, { ok: true, members: c.members });
      else assert.deepEqual(r, { ok: false, error: c.error });
    });
  }
  for (const c of v.mutations) {
    it(`mutation: ${c.name}`, () => {
      assert.equal(formatTracestate(c.members, c.entry), c.expected_header);
    });
  }
});

describe('raceway_clock.json', () => {
  const v = loadVectors('raceway_clock.json');
  assert.ok(v.decode.length > 0 && v.roundtrip.length > 0);
  for (const c of v.decode) {
    it(`decode: ${c.name}`, () => {
      const r = decodeClock(c.header);
      if (c.valid) {
        assert.ok(r.ok, JSON.stringify(r));
        if (r.ok) assert.deepEqual(r.payload, canonical(c.payload));
      } else {
        assert.deepEqual(r, { ok: false, error: c.error });
      }
    });
  }
  for (const c of v.roundtrip) {
    it(`roundtrip: ${c.name}`, () => {
      const header = encodeClock(c.payload);
      assert.match(header, /^v1;[A-Za-z0-9_-]+$/);
      // Encoders always emit a zstd frame (stored up to CLOCK_STORE_UNCOMPRESSED_UP_TO JSON bytes, else compressed).
      assert.deepEqual([...Buffer.from(header.slice(3), 'base64url').subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
      const r = decodeClock(header);
      assert.ok(r.ok, JSON.stringify(r));
      if (r.ok) assert.deepEqual(r.payload, canonical(c.payload));
    });
  }
});

describe('propagation.json', () => {
  const v = loadVectors('propagation.json');
  assert.ok(v.cases.length > 0);
  for (const c of v.cases) {
    it(c.name, () => {
      const r = extract(c.headers);
      const e = c.expected;
      const tp = r.traceparent;
      if (e.trace === 'continued') {
        assert.equal(tp.status, 'valid');
        if (tp.status !== 'valid') return;
        assert.equal(tp.value.traceId, e.trace_id);
        assert.equal(tp.value.parentId, e.parent_id);
        assert.equal(flagsHex(tp.value.flags), e.flags);
      } else {
        assert.notEqual(tp.status, 'valid');
      }
      assert.equal(tp.status === 'invalid' ? tp.error : null, e.traceparent_error);
      assert.deepEqual(r.tracestate, e.tracestate);
      assert.equal(r.tracestateError, e.tracestate_error);
      assert.equal(r.clockStatus, e.clock_status);
      assert.deepEqual(r.clock, canonical(e.clock));
    });
  }
});

describe('vector_clock.json', () => {
  const v = loadVectors('vector_clock.json');
  assert.ok(v.cases.length > 0);
  for (const c of v.cases) {
    it(`${c.op}: ${c.name}`, () => {
      if (c.op === 'compare') assert.equal(compareClocks(c.a, c.b), c.expected);
      else if (c.op === 'merge') assert.deepEqual(mergeClocks(c.a, c.b), c.expected);
      else if (c.op === 'tick') assert.deepEqual(tickClock(c.a, c.key), c.expected);
      else assert.fail(`unknown op ${c.op}`);
    });
  }
});
