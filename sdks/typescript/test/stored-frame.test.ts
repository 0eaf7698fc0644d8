import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { decompress as libDecompress, init as libInit } from '@bokuweb/zstd-wasm';
import {
  CLOCK_STORE_UNCOMPRESSED_UP_TO,
  decodeClock,
  encodeClock,
  storedZstdFrame,
  type ClockPayload,
} from '../src/index.js';

/** PROPAGATION.md §3.1: payloads of at most 512 JSON bytes travel as a zstd frame with one stored Raw_Block. */

function payload(components: number): ClockPayload {
  const clock: Array<[string, number]> = [];
  for (let i = 0; i < components; i++) clock.push([`service-${String(i).padStart(3, '0')}#instance-${i}`, i + 1]);
  return {
    trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736',
    span_id: '00f067aa0ba902b7',
    parent_span_id: 'a3ce929d0e0e4736',
    service: 'service-000',
    instance: 'instance-0',
    clock,
    flags: [],
  };
}

function jsonBytes(p: ClockPayload): Buffer {
  return Buffer.from(
    JSON.stringify({
      trace_id: p.trace_id,
      span_id: p.span_id,
      parent_span_id: p.parent_span_id,
      service: p.service,
      instance: p.instance,
      clock: p.clock,
      flags: p.flags,
    }),
  );
}

function frameOf(header: string): Buffer {
  assert.match(header, /^v1;[A-Za-z0-9_-]+$/);
  return Buffer.from(header.slice(3), 'base64url');
}

describe('stored zstd frame (PROPAGATION.md §3.1)', () => {
  before(async () => {
    // The package's own (asynchronous) API, not the SDK's synchronous wrapper: an independent decoder.
    await libInit();
  });

  it('the threshold is 512 bytes, as in the Rust SDK', () => {
    assert.equal(CLOCK_STORE_UNCOMPRESSED_UP_TO, 512);
  });

  for (const n of [1, 255, 256, 257, 512]) {
    it(`${n}-byte stored frame: layout, and libzstd decodes it`, () => {
      const raw = new Uint8Array(n);
      for (let i = 0; i < n; i++) raw[i] = 0x20 + ((i * 7) % 95);
      const frame = storedZstdFrame(raw);
      const head =
        n < 256 ? [0x28, 0xb5, 0x2f, 0xfd, 0x20, n] : [0x28, 0xb5, 0x2f, 0xfd, 0x60, (n - 256) & 0xff, (n - 256) >> 8];
      const bh = (n << 3) | 1;
      assert.deepEqual([...frame.subarray(0, head.length + 3)], [...head, bh & 0xff, (bh >> 8) & 0xff, bh >> 16]);
      assert.equal(frame.length, head.length + 3 + n);
      assert.deepEqual(Buffer.from(libDecompress(frame)), Buffer.from(raw));
    });
  }

  it('rejects sizes a stored single-segment frame cannot carry', () => {
    assert.throws(() => storedZstdFrame(new Uint8Array(0)), RangeError);
  });

  for (const components of [1, 2, 4]) {
    it(`encodeClock with ${components} component(s) stores the JSON uncompressed and decodes back`, () => {
      const p = payload(components);
      const json = jsonBytes(p);
      assert.ok(json.length <= CLOCK_STORE_UNCOMPRESSED_UP_TO, `${json.length} bytes`);
      const header = encodeClock(p);
      const frame = frameOf(header);
      assert.equal(frame.length, json.length + (json.length < 256 ? 9 : 10));
      assert.deepEqual(frame.subarray(frame.length - json.length), json);
      assert.deepEqual(Buffer.from(libDecompress(frame)), json);
      const r = decodeClock(header);
      assert.ok(r.ok, JSON.stringify(r));
      if (r.ok) assert.deepEqual(r.payload, p);
    });
  }

  for (const components of [16, 64]) {
    it(`encodeClock with ${components} components compresses (frame smaller than the JSON) and decodes back`, () => {
      const p = payload(components);
      const json = jsonBytes(p);
      assert.ok(json.length > CLOCK_STORE_UNCOMPRESSED_UP_TO);
      const header = encodeClock(p);
      const frame = frameOf(header);
      assert.deepEqual([...frame.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
      assert.ok(frame.length < json.length, `${frame.length} >= ${json.length}`);
      assert.deepEqual(Buffer.from(libDecompress(frame)), json);
      const r = decodeClock(header);
      assert.ok(r.ok, JSON.stringify(r));
      if (r.ok) assert.deepEqual(r.payload, p);
    });
  }

  it('the threshold is inclusive: a 512-byte JSON is stored, a 513-byte one is compressed', () => {
    for (const target of [512, 513]) {
      const p = payload(1);
      // Grow the instance name (then the service name), one byte of JSON per character, to exactly `target`.
      while (jsonBytes(p).length < target && p.instance.length < 256) p.instance += 'x';
      while (jsonBytes(p).length < target) p.service += 's';
      const json = jsonBytes(p);
      assert.equal(json.length, target);
      const frame = frameOf(encodeClock(p));
      if (target === 512) {
        assert.deepEqual([...frame.subarray(4, 7)], [0x60, 0x00, 0x01]);
        assert.deepEqual(frame.subarray(frame.length - json.length), json);
      } else {
        assert.ok(frame.length < json.length);
      }
      assert.deepEqual(Buffer.from(libDecompress(frame)), json);
    }
  });
});
