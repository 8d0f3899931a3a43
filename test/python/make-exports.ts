// Writes the folders test/python/check_exports.py loads (export-sources.ts)
// into the folder given, for sending to the GPU machine:
//   npx tsx test/python/make-exports.ts test/fixtures/exports-src
// The default model's export holds the same tensors as the committed
// resources/default-model/model.safetensors, in another order: it is sent as
// its header, its sha256 and that file's name (model.safetensors.ship.json);
// check_exports.py puts the file together again and checks the sha256.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../../engine/backend/select';
import { buildExports, buildSources, DEFAULT_MODEL } from './export-sources';

const out = process.argv[2];
if (!out) throw new Error('usage: make-exports.ts <output folder>');
await initBackend();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-export-sources-'));
try {
  const cases = await buildExports(await buildSources(scratch), path.resolve(out));
  const weights = path.join(out, 'default-model', 'model.safetensors');
  const bytes = fs.readFileSync(weights);
  const headerBytes = 8 + Number(bytes.readBigUInt64LE(0));
  fs.writeFileSync(`${weights}.header`, bytes.subarray(0, headerBytes));
  const ship = {
    sha256: crypto.createHash('sha256').update(bytes).digest('hex'),
    tensorsFrom: path.relative(path.resolve(out, 'default-model'), path.join(DEFAULT_MODEL, 'model.safetensors')),
  };
  fs.writeFileSync(`${weights}.ship.json`, JSON.stringify(ship, null, 2) + '\n');
  fs.rmSync(weights);
  console.log(`${out}: ${cases.scored.length} folders to score, ${cases.refusals.length} to refuse`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
