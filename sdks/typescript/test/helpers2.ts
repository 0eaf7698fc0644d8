import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Ajv2020Module from 'ajv/dist/2020.js';
import { SCHEMA_PATH } from './helpers.js';

export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** A real local backend: records every POST /v1/events body; `behaviour` decides the answer. */
export class FakeBackend {
  readonly batches: any[] = [];
  readonly requests: Array<{ headers: IncomingMessage['headers']; body: string }> = [];
  behaviour: (req: IncomingMessage, res: ServerResponse, body: string) => void = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"accepted":0,"duplicates":0,"rejected":[]}');
  };
  readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      this.requests.push({ headers: req.headers, body });
      try {
        this.batches.push(JSON.parse(body));
      } catch {
        this.batches.push(null);
      }
      this.behaviour(req, res, body);
    });
  });
  url = '';

  async start(): Promise<string> {
    this.url = await listen(this.server);
    return this.url;
  }

  events(): any[] {
    return this.batches.flatMap((b) => (b && Array.isArray(b.events) ? b.events : []));
  }

  stop(): Promise<void> {
    return close(this.server);
  }
}

/** ajv (draft 2020-12) validator for spec/events.schema.json (a batch `{"events": [...]}`). */
export function batchValidator(): (batch: unknown) => { ok: boolean; errors: string } {
  const Ajv2020 = ((Ajv2020Module as any).default ?? Ajv2020Module) as new (opts: object) => any;
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
  return (batch) => {
    const ok = validate(batch) as boolean;
    return { ok, errors: ok ? '' : ajv.errorsText(validate.errors) };
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for condition');
    await sleep(10);
  }
}
