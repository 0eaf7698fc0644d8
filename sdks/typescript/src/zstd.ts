// Synchronous zstd (libzstd compiled to WebAssembly, shipped inside the `@bokuweb/zstd-wasm` npm package).
//
// The package's own glue only offers an asynchronous `init()`; header encoding must be synchronous (a response
// header is set inside `writeHead`), so the module is compiled and instantiated synchronously here, once, on first
// use. The export/import names below are the minified names of that exact package version (pinned in
// package.json); `load()` checks them and reports `null` on any mismatch, in which case the encoder falls back to
// plain-JSON payloads for JSON above 512 bytes (smaller payloads are framed as stored zstd frames without libzstd;
// every decoder accepts both, PROPAGATION.md §3.1) and the decoder reports `malformed` for zstd frames.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// Minimal WebAssembly typings (the DOM lib is not part of this Node-only build).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (...args: never[]) => WasmMemory;
}
const WebAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface ZstdExports {
  f: WasmMemory; // memory
  g: () => void; // __wasm_call_ctors
  h: (code: number) => number; // ZSTD_isError
  i: (size: number) => number; // ZSTD_compressBound
  j: () => number; // ZSTD_createCCtx
  l: (cctx: number, dst: number, cap: number, src: number, size: number, dict: number, dictSize: number, level: number) => number; // ZSTD_compress_usingDict
  n: () => number; // ZSTD_createDCtx
  q: (dctx: number, dst: number, cap: number, src: number, size: number, dict: number, dictSize: number) => number; // ZSTD_decompress_usingDict
  s: (size: number) => number; // malloc
  t: (ptr: number) => void; // free
}

/** zstd error code `dstSize_tooSmall` (libzstd `zstd_errors.h`). */
const ZSTD_ERROR_DST_SIZE_TOO_SMALL = 70;

export class ZstdUnavailableError extends Error {}

export type DecompressResult = { ok: true; bytes: Uint8Array } | { ok: false; tooLarge: boolean };

class Zstd {
  private readonly x: ZstdExports;
  private readonly cctx: number;
  private readonly dctx: number;
  private src = 0;
  private srcCap = 0;
  private dst = 0;
  private dstCap = 0;

  constructor(x: ZstdExports) {
    this.x = x;
    this.cctx = x.j();
    this.dctx = x.n();
    if (this.cctx === 0 || this.dctx === 0) throw new ZstdUnavailableError('zstd context allocation failed');
  }

  private ensure(srcSize: number, dstSize: number): void {
    if (srcSize > this.srcCap) {
      if (this.src) this.x.t(this.src);
      this.srcCap = Math.max(srcSize, 4096);
      this.src = this.x.s(this.srcCap);
    }
    if (dstSize > this.dstCap) {
      if (this.dst) this.x.t(this.dst);
      this.dstCap = Math.max(dstSize, 4096);
      this.dst = this.x.s(this.dstCap);
    }
    if (this.src === 0 || this.dst === 0) {
      this.srcCap = 0;
      this.dstCap = 0;
      throw new ZstdUnavailableError('zstd buffer allocation failed');
    }
  }

  compress(input: Uint8Array, level: number): Uint8Array {
    const bound = this.x.i(input.length);
    this.ensure(input.length, bound);
    new Uint8Array(this.x.f.buffer).set(input, this.src);
    const r = this.x.l(this.cctx, this.dst, bound, this.src, input.length, 0, 0, level);
    if (this.x.h(r)) throw new ZstdUnavailableError('zstd compression failed');
    return new Uint8Array(this.x.f.buffer, this.dst, r >>> 0).slice();
  }

  /** Decompresses into a buffer of exactly `limit` bytes: libzstd stops with `dstSize_tooSmall` as soon as the
   * output would exceed it (or at once when the frame header declares a larger content size), so a zstd bomb
   * costs at most `limit` bytes of output work. */
  decompress(input: Uint8Array, limit: number): DecompressResult {
    this.ensure(input.length, limit);
    new Uint8Array(this.x.f.buffer).set(input, this.src);
    const r = this.x.q(this.dctx, this.dst, limit, this.src, input.length, 0, 0);
    if (this.x.h(r)) {
      const code = 0x1_0000_0000 - (r >>> 0);
      return { ok: false, tooLarge: code === ZSTD_ERROR_DST_SIZE_TOO_SMALL };
    }
    return { ok: true, bytes: new Uint8Array(this.x.f.buffer, this.dst, r >>> 0).slice() };
  }
}

let instance: Zstd | null | undefined;

function wasmPath(): string {
  // Works from the ESM build, the CJS build (tsup shims import.meta.url) and from sources under tsx.
  const req = createRequire(import.meta.url);
  return join(dirname(req.resolve('@bokuweb/zstd-wasm')), 'zstd.wasm');
}

function load(): Zstd | null {
  try {
    const module = new WebAssembly.Module(readFileSync(wasmPath()));
    let memory: WasmMemory | undefined;
    const fail = (what: string) => () => {
      throw new ZstdUnavailableError(what);
    };
    const imports = {
      a: {
        a: fail('zstd wasm exited'), // proc_exit
        b: () => undefined, // _emscripten_runtime_keepalive_clear
        c: fail('zstd wasm aborted'), // _abort_js
        d: () => 0, // _setitimer_js (unused by libzstd)
        e: (requested: number): number => {
          // emscripten_resize_heap
          if (!memory) return 0;
          const wanted = requested >>> 0;
          if (wanted > 0x8000_0000) return 0;
          const current = memory.buffer.byteLength;
          const grown = Math.max(wanted, Math.floor(current * 1.2));
          try {
            memory.grow(Math.ceil((Math.min(grown, 0x8000_0000) - current) / 65536));
            return 1;
          } catch {
            return 0;
          }
        },
      },
    };
    const inst = new WebAssembly.Instance(module, imports);
    const x = inst.exports as unknown as ZstdExports;
    const fns: Array<[keyof ZstdExports, number]> = [
      ['g', 0], ['h', 1], ['i', 1], ['j', 0], ['l', 8], ['n', 0], ['q', 7], ['s', 1], ['t', 1],
    ];
    if (!(x.f instanceof WebAssembly.Memory)) return null;
    for (const [name, arity] of fns) {
      const f = x[name];
      if (typeof f !== 'function' || f.length !== arity) return null;
    }
    memory = x.f;
    x.g();
    return new Zstd(x);
  } catch {
    return null;
  }
}

/** The process-wide zstd instance, or null when the WebAssembly module cannot be loaded. */
export function zstd(): Zstd | null {
  if (instance === undefined) instance = load();
  return instance;
}
