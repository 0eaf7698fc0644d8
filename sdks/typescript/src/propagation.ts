// Wire format of PROPAGATION.md: traceparent, tracestate and the raceway-clock vendor header.
// Pure functions, no I/O. Header names are matched ASCII case-insensitively.
import { compareUtf8, utf8Length } from './bytes.js';
import { MAX_COUNTER } from './vectorClock.js';
import { zstd } from './zstd.js';

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';
export const RACEWAY_CLOCK = 'raceway-clock';
export const RACEWAY_TRACESTATE_KEY = 'raceway';

export const MAX_CLOCK_HEADER_BYTES = 8192;
export const MAX_CLOCK_JSON_BYTES = 65_536;
export const MAX_CLOCK_COMPONENTS = 256;
export const MAX_TRACESTATE_BYTES = 8192;
export const MAX_TRACESTATE_MEMBERS = 32;

/** A header list as received: `[name, value]` lines in order (names in any case). */
export type HeaderLines = Iterable<readonly [string, string]>;

// ------------------------------------------------------------------------------------------------ traceparent

export type TraceparentError = 'duplicate' | 'malformed' | 'zero_trace_id' | 'zero_parent_id';

export interface Traceparent {
  /** 32 lowercase hex. */
  traceId: string;
  /** 16 lowercase hex: the caller's id for this call. */
  parentId: string;
  /** Trace flags masked to `0x03`. */
  flags: number;
}

export type TraceparentResult =
  | { status: 'valid'; value: Traceparent }
  | { status: 'absent' }
  | { status: 'invalid'; error: TraceparentError };

const OWS_TRIM = /^[ \t]+|[ \t]+$/g;

function trimOws(v: string): string {
  const a = v.charCodeAt(0);
  const b = v.charCodeAt(v.length - 1);
  if (a !== 0x20 && a !== 0x09 && b !== 0x20 && b !== 0x09) return v;
  return v.replace(OWS_TRIM, '');
}

/** Lowercase hex digit value + 1 (0 = not a lowercase hex digit), indexed by char code. */
const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i + 1;
for (let i = 0; i < 6; i++) HEX[0x61 + i] = i + 11;

function isLowerHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || HEX[c] === 0) return false;
  }
  return true;
}

function isZeros(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (s.charCodeAt(i) !== 0x30) return false;
  return true;
}

/** Parses one traceparent value (PROPAGATION.md §1.1 steps 2–8). */
export function parseTraceparentValue(raw: string): TraceparentResult {
  const v = trimOws(raw);
  const bad = { status: 'invalid', error: 'malformed' } as const;
  if (v.length < 55) return bad;
  if (!isLowerHex(v, 0, 2)) return bad;
  if (v.charCodeAt(0) === 0x66 && v.charCodeAt(1) === 0x66) return bad; // ff
  if (v.charCodeAt(2) !== 0x2d || v.charCodeAt(35) !== 0x2d || v.charCodeAt(52) !== 0x2d) return bad;
  if (!isLowerHex(v, 3, 35) || !isLowerHex(v, 36, 52) || !isLowerHex(v, 53, 55)) return bad;
  const version00 = v.charCodeAt(0) === 0x30 && v.charCodeAt(1) === 0x30;
  if (version00) {
    if (v.length !== 55) return bad;
  } else if (v.length > 55 && v.charCodeAt(55) !== 0x2d) return bad;
  if (isZeros(v, 3, 35)) return { status: 'invalid', error: 'zero_trace_id' };
  if (isZeros(v, 36, 52)) return { status: 'invalid', error: 'zero_parent_id' };
  return {
    status: 'valid',
    value: { traceId: v.slice(3, 35), parentId: v.slice(36, 52), flags: (HEX[v.charCodeAt(54)]! - 1) & 0x03 },
  };
}

/** `extract(lines)` for traceparent: all field-line values named traceparent, in order. */
export function parseTraceparent(lines: readonly string[]): TraceparentResult {
  if (lines.length === 0) return { status: 'absent' };
  if (lines.length > 1) return { status: 'invalid', error: 'duplicate' };
  return parseTraceparentValue(lines[0]!);
}

/** `00-<trace>-<parent>-<flags & 3>`. */
export function formatTraceparent(traceId: string, parentId: string, flags: number): string {
  const f = flags & 0x03;
  return `00-${traceId}-${parentId}-0${f}`;
}

export function flagsHex(flags: number): string {
  return (flags & 0xff).toString(16).padStart(2, '0');
}

// ------------------------------------------------------------------------------------------------ tracestate

export type TracestateError = 'too_long' | 'too_many_members' | 'duplicate_key' | 'invalid_member';
export type TracestateMember = [key: string, value: string];
export type TracestateResult = { ok: true; members: TracestateMember[] } | { ok: false; error: TracestateError };

function validKey(s: string, from: number, to: number): boolean {
  const n = to - from;
  if (n < 1 || n > 256) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      (i > from && (c === 0x5f || c === 0x2d || c === 0x2a || c === 0x2f || c === 0x40));
    if (!ok) return false;
  }
  return true;
}

function validValue(s: string, from: number, to: number): boolean {
  const n = to - from;
  if (n < 1 || n > 256) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x2c || c === 0x3d) return false;
  }
  return s.charCodeAt(to - 1) !== 0x20;
}

/** Parses all tracestate field-line values (call only when traceparent was valid), §2.1. */
export function parseTracestate(lines: readonly string[]): TracestateResult {
  if (lines.length === 0) return { ok: true, members: [] };
  const combined = lines.length === 1 ? lines[0]! : lines.join(',');
  if (combined.length > MAX_TRACESTATE_BYTES && utf8Length(combined) > MAX_TRACESTATE_BYTES) {
    return { ok: false, error: 'too_long' };
  }
  const members: TracestateMember[] = [];
  let invalid = false;
  let count = 0;
  const len = combined.length;
  let start = 0;
  while (start <= len) {
    let end = combined.indexOf(',', start);
    if (end < 0) end = len;
    // strip OWS at both ends of the member
    let a = start;
    let b = end;
    while (a < b && (combined.charCodeAt(a) === 0x20 || combined.charCodeAt(a) === 0x09)) a++;
    while (b > a && (combined.charCodeAt(b - 1) === 0x20 || combined.charCodeAt(b - 1) === 0x09)) b--;
    start = end + 1;
    if (a === b) continue;
    count++;
    if (count > MAX_TRACESTATE_MEMBERS) return { ok: false, error: 'too_many_members' };
    if (invalid) continue;
    const eq = combined.indexOf('=', a);
    if (eq < 0 || eq >= b || !validKey(combined, a, eq) || !validValue(combined, eq + 1, b)) {
      invalid = true;
      continue;
    }
    members.push([combined.slice(a, eq), combined.slice(eq + 1, b)]);
  }
  if (invalid) return { ok: false, error: 'invalid_member' };
  for (let i = 1; i < members.length; i++) {
    const k = members[i]![0];
    for (let j = 0; j < i; j++) if (members[j]![0] === k) return { ok: false, error: 'duplicate_key' };
  }
  return { ok: true, members };
}

/**
 * Mutation for injection (§2.2): drop any `raceway` member, put `raceway=<entry>` left-most when `entry` is not
 * null, trim to 32 members from the right. Returns the header value, or null when the list is empty.
 */
export function formatTracestate(members: readonly TracestateMember[], entry: string | null): string | null {
  const out: string[] = [];
  if (entry !== null) out.push(`${RACEWAY_TRACESTATE_KEY}=${entry}`);
  for (const [k, v] of members) {
    if (k === RACEWAY_TRACESTATE_KEY) continue;
    if (out.length >= MAX_TRACESTATE_MEMBERS) break;
    out.push(`${k}=${v}`);
  }
  return out.length === 0 ? null : out.join(',');
}

// ------------------------------------------------------------------------------------------------ raceway-clock

export type ClockError = 'too_long' | 'unsupported_version' | 'malformed' | 'too_large' | 'too_many_components';

/** The canonical `raceway-clock` JSON payload (§3.2). */
export interface ClockPayload {
  /** UUID text, lowercase. */
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  service: string;
  instance: string;
  /** Sorted by key bytewise, keys unique. */
  clock: Array<[string, number]>;
  flags: string[];
}

export type ClockResult = { ok: true; payload: ClockPayload } | { ok: false; error: ClockError };

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const SPAN = /^[0-9a-f]{16}$/;
const VERSION = /^v([0-9]{1,3});/;
const B64URL = /^[A-Za-z0-9_-]+$/;
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

function isSpanId(v: unknown): v is string {
  return typeof v === 'string' && SPAN.test(v) && v !== '0000000000000000';
}

function isBoundedString(v: unknown, maxBytes: number): v is string {
  return typeof v === 'string' && v.length > 0 && utf8Length(v) <= maxBytes;
}

function fail(error: ClockError): ClockResult {
  return { ok: false, error };
}

/** Validates a parsed JSON value as a clock payload and returns its canonical form. */
export function canonicalizeClockPayload(obj: unknown): ClockResult {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return fail('malformed');
  const o = obj as Record<string, unknown>;
  if (typeof o.trace_id !== 'string' || !UUID.test(o.trace_id)) return fail('malformed');
  if (!isSpanId(o.span_id)) return fail('malformed');
  const parent = o.parent_span_id;
  if (parent !== undefined && parent !== null && !isSpanId(parent)) return fail('malformed');
  if (!isBoundedString(o.service, 256) || !isBoundedString(o.instance, 256)) return fail('malformed');
  const clock = o.clock;
  if (!Array.isArray(clock)) return fail('malformed');
  if (clock.length > MAX_CLOCK_COMPONENTS) return fail('too_many_components');
  const merged = new Map<string, number>();
  for (const entry of clock) {
    if (!Array.isArray(entry) || entry.length !== 2) return fail('malformed');
    const [k, n] = entry as [unknown, unknown];
    if (!isBoundedString(k, 256)) return fail('malformed');
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_COUNTER) return fail('malformed');
    const cur = merged.get(k);
    if (cur === undefined || n > cur) merged.set(k, n);
  }
  let flags: string[] = [];
  if (o.flags !== undefined && o.flags !== null) {
    if (!Array.isArray(o.flags) || o.flags.length > 16) return fail('malformed');
    for (const f of o.flags) if (!isBoundedString(f, 64)) return fail('malformed');
    flags = (o.flags as string[]).slice();
  }
  const pairs = [...merged.entries()];
  pairs.sort((a, b) => compareUtf8(a[0], b[0]));
  return {
    ok: true,
    payload: {
      trace_id: o.trace_id.toLowerCase(),
      span_id: o.span_id,
      parent_span_id: (parent as string | null | undefined) ?? null,
      service: o.service,
      instance: o.instance,
      clock: pairs,
      flags,
    },
  };
}

/** Decodes one `raceway-clock` value (§3.1–3.4). */
export function decodeClock(raw: string): ClockResult {
  const v = trimOws(raw);
  if (v.length > MAX_CLOCK_HEADER_BYTES && utf8Length(v) > MAX_CLOCK_HEADER_BYTES) return fail('too_long');
  const m = VERSION.exec(v);
  if (!m) return fail('malformed');
  if (m[1] !== '1') return fail('unsupported_version');
  const b64 = v.slice(m[0].length);
  if (b64.length === 0 || b64.length % 4 === 1 || !B64URL.test(b64)) return fail('malformed');
  const bytes = Buffer.from(b64, 'base64url');
  let json: Uint8Array;
  if (bytes.length >= 4 && bytes[0] === ZSTD_MAGIC[0] && bytes[1] === ZSTD_MAGIC[1] && bytes[2] === ZSTD_MAGIC[2] && bytes[3] === ZSTD_MAGIC[3]) {
    const z = zstd();
    if (!z) return fail('malformed');
    const r = z.decompress(bytes, MAX_CLOCK_JSON_BYTES);
    if (!r.ok) return fail(r.tooLarge ? 'too_large' : 'malformed');
    json = r.bytes;
  } else if (bytes.length > 0 && bytes[0] === 0x7b) {
    if (bytes.length > MAX_CLOCK_JSON_BYTES) return fail('too_large');
    json = bytes;
  } else return fail('malformed');
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decoder.decode(json));
  } catch {
    return fail('malformed');
  }
  return canonicalizeClockPayload(parsed);
}

/** Decodes all `raceway-clock` field-line values: more than one line is `malformed`. */
export function decodeClockLines(lines: readonly string[]): ClockResult | null {
  if (lines.length === 0) return null;
  if (lines.length > 1) return fail('malformed');
  return decodeClock(lines[0]!);
}

/** zstd level used by the encoder for payloads above {@link CLOCK_STORE_UNCOMPRESSED_UP_TO} bytes. */
export const CLOCK_ZSTD_LEVEL = 1;

/** JSON payloads of at most this many bytes (≈ 8 clock components) are sent as a zstd frame holding one stored
 * `Raw_Block` instead of being compressed (PROPAGATION.md §3.1): at that size compression saves < 100 bytes while
 * setting up zstd's entropy tables costs more than the rest of a hop. Larger payloads are compressed. Same value as
 * the Rust SDK's `raceway::clock_header::STORE_UNCOMPRESSED_UP_TO`. */
export const CLOCK_STORE_UNCOMPRESSED_UP_TO = 512;

/** A single-segment zstd frame (RFC 8878 §3.1.1) holding `raw` (1–65,791 bytes) in one uncompressed `Raw_Block`:
 * magic, Frame_Header_Descriptor with Single_Segment_flag (Frame_Content_Size on 1 byte below 256, else on 2 bytes
 * as `size - 256`), a 3-byte Block_Header (Last_Block = 1, Block_Type = Raw, Block_Size), then the bytes. Every zstd
 * decoder reads it. */
export function storedZstdFrame(raw: Uint8Array): Uint8Array {
  const n = raw.length;
  if (n === 0 || n >= 256 + 65_536) throw new RangeError(`stored zstd frame: size ${n} out of range`);
  const small = n < 256;
  const head = small ? 9 : 10;
  const frame = new Uint8Array(head + n);
  frame[0] = 0x28;
  frame[1] = 0xb5;
  frame[2] = 0x2f;
  frame[3] = 0xfd;
  let i: number;
  if (small) {
    frame[4] = 0x20;
    frame[5] = n;
    i = 6;
  } else {
    frame[4] = 0x60;
    frame[5] = (n - 256) & 0xff;
    frame[6] = (n - 256) >>> 8;
    i = 7;
  }
  const blockHeader = (n << 3) | 1;
  frame[i] = blockHeader & 0xff;
  frame[i + 1] = (blockHeader >>> 8) & 0xff;
  frame[i + 2] = (blockHeader >>> 16) & 0xff;
  frame.set(raw, head);
  return frame;
}

/** `v1;` + base64url-nopad(zstd frame(JSON)): a stored frame up to {@link CLOCK_STORE_UNCOMPRESSED_UP_TO} JSON bytes,
 * a compressed one above. Falls back to plain JSON only if a large payload meets an unloadable zstd module. */
export function encodeClock(payload: ClockPayload): string {
  const json = JSON.stringify({
    trace_id: payload.trace_id,
    span_id: payload.span_id,
    parent_span_id: payload.parent_span_id,
    service: payload.service,
    instance: payload.instance,
    clock: payload.clock,
    flags: payload.flags,
  });
  const raw = utf8Encoder.encode(json);
  let bytes: Uint8Array = raw;
  if (raw.length <= CLOCK_STORE_UNCOMPRESSED_UP_TO) {
    bytes = storedZstdFrame(raw);
  } else {
    const z = zstd();
    if (z) {
      try {
        bytes = z.compress(raw, CLOCK_ZSTD_LEVEL);
      } catch {
        bytes = raw;
      }
    }
  }
  return `v1;${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')}`;
}

// ------------------------------------------------------------------------------------------------ whole request

export type ClockStatus = 'ok' | 'reparented' | 'conflict' | 'absent' | 'ignored' | ClockError;

export interface Extracted {
  traceparent: TraceparentResult;
  /** Members when traceparent was valid and tracestate parsed (else empty). */
  tracestate: TracestateMember[];
  tracestateError: TracestateError | null;
  clockStatus: ClockStatus;
  /** The decoded canonical clock payload when status is `ok` or `reparented`. */
  clock: ClockPayload | null;
}

/** Collects the three headers from `[name, value]` lines (names case-insensitive). */
export function collectHeaders(headers: HeaderLines): { tp: string[]; ts: string[]; rc: string[] } {
  const tp: string[] = [];
  const ts: string[] = [];
  const rc: string[] = [];
  for (const [name, value] of headers) {
    const n = name.length;
    if (n === 11) {
      if (name === TRACEPARENT || name.toLowerCase() === TRACEPARENT) tp.push(value);
    } else if (n === 10) {
      if (name === TRACESTATE || name.toLowerCase() === TRACESTATE) ts.push(value);
    } else if (n === 13) {
      if (name === RACEWAY_CLOCK || name.toLowerCase() === RACEWAY_CLOCK) rc.push(value);
    }
  }
  return { tp, ts, rc };
}

/** Whole-request extraction (§1.1, §2.1, §3.5). Never throws. */
export function extract(headers: HeaderLines): Extracted {
  const { tp, ts, rc } = collectHeaders(headers);
  return extractFromValues(tp, ts, rc);
}

export function extractFromValues(tp: readonly string[], ts: readonly string[], rc: readonly string[]): Extracted {
  const traceparent = parseTraceparent(tp);
  if (traceparent.status !== 'valid') {
    return {
      traceparent,
      tracestate: [],
      tracestateError: null,
      clockStatus: rc.length > 0 ? 'ignored' : 'absent',
      clock: null,
    };
  }
  const st = parseTracestate(ts);
  const tracestate = st.ok ? st.members : [];
  const tracestateError = st.ok ? null : st.error;
  const decoded = decodeClockLines(rc);
  let clockStatus: ClockStatus;
  let clock: ClockPayload | null = null;
  if (decoded === null) clockStatus = 'absent';
  else if (!decoded.ok) clockStatus = decoded.error;
  else if (decoded.payload.trace_id.replace(/-/g, '') !== traceparent.value.traceId) clockStatus = 'conflict';
  else {
    clock = decoded.payload;
    clockStatus = clock.span_id === traceparent.value.parentId ? 'ok' : 'reparented';
  }
  return { traceparent, tracestate, tracestateError, clockStatus, clock };
}

/** Headers to send on an outgoing call (§1.2, §2.2, §3.6). */
export interface InjectInput {
  traceId: string;
  /** The fresh span id of this call. */
  spanId: string;
  flags: number;
  tracestate: readonly TracestateMember[];
  /** Whether to add `raceway=<spanId>` to tracestate. */
  tracestateEntry: boolean;
  clock: ClockPayload | null;
}

export function inject(input: InjectInput): Array<[string, string]> {
  const out: Array<[string, string]> = [[TRACEPARENT, formatTraceparent(input.traceId, input.spanId, input.flags)]];
  const ts = formatTracestate(input.tracestate, input.tracestateEntry ? input.spanId : null);
  if (ts !== null) out.push([TRACESTATE, ts]);
  if (input.clock) out.push([RACEWAY_CLOCK, encodeClock(input.clock)]);
  return out;
}
