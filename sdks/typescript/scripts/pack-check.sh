#!/usr/bin/env bash
# Packs the package, installs the tarball into a temp project and loads it with CJS require and ESM import.
set -euo pipefail
cd "$(dirname "$0")/.."
SDK_DIR="$(pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

TARBALL="$(npm pack --silent --pack-destination "$TMP" | tail -n 1)"
echo "packed $TARBALL"
tar -tzf "$TMP/$TARBALL" | sort

mkdir "$TMP/app"
cd "$TMP/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$TMP/$TARBALL"

cat > check.cjs <<'JS'
const assert = require('node:assert');
const sdk = require('@raceway/sdk');
assert.strictEqual(typeof sdk.Raceway, 'function');
const rw = new sdk.Raceway({ serviceName: 'pack-cjs' });
const h = sdk.encodeClock({ trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736', span_id: '00f067aa0ba902b7', parent_span_id: null, service: 's', instance: 'i', clock: [['s#i', 1]], flags: [] });
assert.deepStrictEqual([...Buffer.from(h.slice(3), 'base64url').subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], 'zstd frame');
assert.ok(sdk.decodeClock(h).ok);
assert.strictEqual(sdk.parseTraceparent(['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']).status, 'valid');
assert.strictEqual(typeof rw.middleware(), 'function');
console.log('CJS require ok');
JS
cat > check.mjs <<'JS'
import assert from 'node:assert';
import { Raceway, encodeClock, decodeClock, extract } from '@raceway/sdk';
const rw = new Raceway({ serviceName: 'pack-esm' });
const h = encodeClock({ trace_id: '4bf92f35-77b3-4da6-a3ce-929d0e0e4736', span_id: '00f067aa0ba902b7', parent_span_id: null, service: 's', instance: 'i', clock: [['s#i', 1]], flags: [] });
assert.ok(decodeClock(h).ok);
assert.strictEqual(extract([['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'], ['raceway-clock', h]]).clockStatus, 'ok');
await rw.runInTrace('pack', async () => assert.ok(rw.currentContext()));
console.log('ESM import ok');
JS
cat > check.ts <<'TS'
import { Raceway, type RacewayConfig, type Stats } from '@raceway/sdk';
const cfg: RacewayConfig = { serviceName: 'types' };
const s: Stats = new Raceway(cfg).stats();
export const n: number = s.events_sent;
TS
node check.cjs
node check.mjs
if [ -x "$SDK_DIR/node_modules/.bin/tsc" ]; then
  "$SDK_DIR/node_modules/.bin/tsc" --noEmit --strict --module nodenext --moduleResolution nodenext --skipLibCheck false --types node --typeRoots "$SDK_DIR/node_modules/@types" check.ts
  echo "type declarations ok"
fi
echo "pack check passed"
