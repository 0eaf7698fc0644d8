import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeClock, encodeClock } from '../src/index.js';

/** A zstd frame with NO content size in its header (so the decoder cannot reject it up front): a raw block `{`
 * followed by `blocks` RLE blocks of 128 KiB of spaces each. */
function streamingBomb(blocks: number): Buffer {
  const parts: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // magic, FHD (no FCS, not single-segment), window 128 KiB
  const blockHeader = (last: boolean, type: number, size: number) => {
    const v = (last ? 1 : 0) | (type << 1) | (size << 3);
    parts.push(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff);
  };
  blockHeader(false, 0, 1);
  parts.push(0x7b); // '{'
  for (let i = 0; i < blocks; i++) {
    blockHeader(i === blocks - 1, 1, 128 * 1024);
    parts.push(0x20);
  }
  return Buffer.from(parts);
}

describe('zstd bomb without a declared content size', () => {
  it('stops at the 65,536-byte limit: too_large, in bounded time', () => {
    const bomb = streamingBomb(1500); // ~192 MiB if fully decompressed, 6 KiB of header
    const header = `v1;${bomb.toString('base64url')}`;
    assert.ok(header.length <= 8192);
    decodeClock(header); // warm-up (module load)
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) assert.deepEqual(decodeClock(header), { ok: false, error: 'too_large' });
    const perCall = (performance.now() - t0) / 20;
    // Decompressing 192 MiB would take far longer than this even on a slow machine.
    assert.ok(perCall < 50, `${perCall.toFixed(2)} ms per decode`);
  });

  it('a truncated frame of the same shape is malformed, not too_large', () => {
    // the raw block is not marked last and nothing follows: a truncated frame
    const small = streamingBomb(0);
    assert.deepEqual(decodeClock(`v1;${small.toString('base64url')}`), { ok: false, error: 'malformed' });
  });

  it('the encoder output stays far below the header bound for the default 64 components', () => {
    const clock: Array<[string, number]> = Array.from({ length: 64 }, (_, i) => [`service-${i}#instance-${i}-7c9f`, i * 1000]);
    const h = encodeClock({
      trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736',
      span_id: '00f067aa0ba902b7',
      parent_span_id: null,
      service: 'checkout',
      instance: 'checkout-1',
      clock,
      flags: [],
    });
    assert.ok(h.length < 8192, `${h.length} bytes`);
    assert.ok(decodeClock(h).ok);
  });
});
