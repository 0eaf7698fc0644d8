// The caller's source location (`file:line:column`) from a V8 structured stack trace.
import { fileURLToPath } from 'node:url';

const fileCache = new Map<string, string>();

function displayFile(file: string): string {
  if (!file.startsWith('file://')) return file;
  let out = fileCache.get(file);
  if (out === undefined) {
    try {
      out = fileURLToPath(file);
    } catch {
      out = file;
    }
    if (fileCache.size > 1000) fileCache.clear();
    fileCache.set(file, out);
  }
  return out;
}

const capture = (frames: NodeJS.CallSite[]) => frames;

type PrepareStackTrace = (err: Error, frames: NodeJS.CallSite[]) => unknown;

// eslint-disable-next-line @typescript-eslint/ban-types
export function callerLocation(skip: Function): string | undefined {
  const E = Error as unknown as { prepareStackTrace?: PrepareStackTrace; stackTraceLimit: number };
  const prevPrepare = E.prepareStackTrace;
  const prevLimit = E.stackTraceLimit;
  try {
    E.stackTraceLimit = 1;
    E.prepareStackTrace = (_e, frames) => capture(frames);
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, skip);
    const frames = holder.stack as NodeJS.CallSite[] | undefined;
    const f = frames?.[0];
    if (!f) return undefined;
    const file = displayFile(f.getFileName() ?? f.getScriptNameOrSourceURL?.() ?? '<anonymous>');
    const line = f.getLineNumber();
    const col = f.getColumnNumber();
    const loc = line == null ? file : col == null ? `${file}:${line}` : `${file}:${line}:${col}`;
    return loc.length > 1024 ? loc.slice(loc.length - 1024) : loc;
  } catch {
    return undefined;
  } finally {
    E.prepareStackTrace = prevPrepare;
    E.stackTraceLimit = prevLimit;
  }
}
