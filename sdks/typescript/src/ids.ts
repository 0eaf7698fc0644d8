import { randomBytes, randomUUID } from 'node:crypto';

const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;

function take(n: number): Buffer {
  if (offset + n > pool.length) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  const out = pool.subarray(offset, offset + n);
  offset += n;
  return out;
}

const ZERO_SPAN = '0000000000000000';
const ZERO_TRACE = '00000000000000000000000000000000';

/** 8 random bytes as 16 lowercase hex, never all zero. */
export function newSpanId(): string {
  for (;;) {
    const id = take(8).toString('hex');
    if (id !== ZERO_SPAN) return id;
  }
}

/** 16 random bytes as 32 lowercase hex, never all zero. */
export function newTraceId(): string {
  for (;;) {
    const id = take(16).toString('hex');
    if (id !== ZERO_TRACE) return id;
  }
}

export function newEventId(): string {
  return randomUUID();
}

/** `4bf92f3577b34da6a3ce929d0e0e4736` -> `4bf92f35-77b3-4da6-a3ce-929d0e0e4736`. */
export function traceIdToUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** UUID text (either case) -> 32 lowercase hex. */
export function uuidToTraceId(uuid: string): string {
  return uuid.replace(/-/g, '').toLowerCase();
}
