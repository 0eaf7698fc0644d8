// RFC 3339 UTC timestamps with nanoseconds: wall clock anchored once, advanced with the monotonic clock.
const anchorWallMs = Date.now();
const anchorHr = process.hrtime.bigint();
const anchorWallNs = BigInt(anchorWallMs) * 1_000_000n;

export function nowNs(): bigint {
  return anchorWallNs + (process.hrtime.bigint() - anchorHr);
}

export function monoNs(): bigint {
  return process.hrtime.bigint();
}

let cachedSecond = -1n;
let cachedPrefix = '';

/** `2026-11-25T13:15:32.123456789Z`. */
export function formatTimestamp(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  if (sec !== cachedSecond) {
    cachedSecond = sec;
    cachedPrefix = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
  }
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${cachedPrefix}.${frac}Z`;
}

export function timestampNow(): string {
  return formatTimestamp(nowNs());
}

/** Non-negative duration in ns between two monotonic readings, as a safe integer. */
export function durationNs(startMono: bigint, endMono: bigint = process.hrtime.bigint()): number {
  const d = endMono - startMono;
  if (d <= 0n) return 0;
  return d > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(d);
}
