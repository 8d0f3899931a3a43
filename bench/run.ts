// `npm run bench [-- suite …]`: runs the benchmark suites and prints JSON lines
// (also appended to bench/results/latest.jsonl). Not a test: nothing here fails
// on a slow machine; targets are compared in the closing notes.
import fs from 'node:fs';
import path from 'node:path';
import type { Emit } from './harness';
import { suites } from './suites';

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !suites.some((s) => s.name === w));
if (unknown.length) {
  console.error(`unknown suite(s): ${unknown.join(', ')} (have: ${suites.map((s) => s.name).join(', ')})`);
  process.exit(2);
}
const outDir = path.join(import.meta.dirname, 'results');
fs.mkdirSync(outDir, { recursive: true });
const out = fs.createWriteStream(path.join(outDir, 'latest.jsonl'), { flags: 'a' });
const emit: Emit = (row) => {
  const line = JSON.stringify({ ...row, at: new Date().toISOString() });
  console.log(line);
  out.write(line + '\n');
};
for (const s of suites) {
  if (wanted.length && !wanted.includes(s.name)) continue;
  console.error(`# suite ${s.name}`);
  await s.run(emit);
}
out.end();
