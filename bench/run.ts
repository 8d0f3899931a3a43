// `npm run bench [-- suite …]`: runs the benchmark suites and prints JSON lines
// (also appended to bench/results/latest.jsonl). Not a test: nothing here fails
// on a slow machine; targets are compared in the closing notes. The first row
// is the machine's conditions: how busy it was in the second before the run.
import fs from 'node:fs';
import path from 'node:path';
import { foreignLoad, hostDescription, machineCpu, type Emit } from './harness';
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
const idle = machineCpu();
await new Promise((r) => setTimeout(r, 1000));
const before = idle && foreignLoad(idle, 0);
emit({
  what: 'conditions',
  backend: 'host',
  shape: 'before the run (1 s)',
  median: before?.foreignShare ?? -1,
  unit: 'busy share of the machine',
  ...hostDescription(),
  suites: wanted.length ? wanted : suites.map((s) => s.name),
});
for (const s of suites) {
  if (wanted.length && !wanted.includes(s.name)) continue;
  console.error(`# suite ${s.name}`);
  await s.run(emit);
}
out.end();
