// Run as `node --import tsx store-crash-writer.ts <home>`: continues the run
// left by the previous (killed) writer, or starts one, then appends metric
// batches and writes checkpoints until it is killed. Before each operation it
// writes a marker to stdout ("M" metrics, "C" checkpoint, "R" removal; "."
// when done) so that the test knows what it interrupted.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openStore } from '../../engine/store/open';
import { BATCH_STEPS, KEEP_CHECKPOINTS, METRICS, metricValue } from './store-crash-plan';

const say = (s: string): void => {
  fs.writeSync(1, s);
};

const store = openStore({ home: process.argv[2] });
const previous = store.runs.resumable()[0] ?? store.runs.create({ kind: 'pretrain', config: { writer: 'crash-test' } });
const run = store.runs.setStatus(previous.id, 'running');
const last = store.metrics.latest(run.id).loss;
let batch = last ? Math.floor(last.step / BATCH_STEPS) + 1 : 0;
let lastCheckpointStep: number | null = store.checkpoints.resumePoint(run.id)?.step ?? null;
say('ready\n');

for (let i = 0; ; i++) {
  say('M');
  const rows = [];
  for (let step = batch * BATCH_STEPS; step < (batch + 1) * BATCH_STEPS; step++) {
    for (const name of METRICS) rows.push({ step, name, value: metricValue(name, step) });
  }
  store.metrics.append(run.id, rows);
  batch++;
  say('.');
  if (i % 2 === 0) continue;

  // Now and then the same step again (a pause right after a resume): the replace path.
  const step = lastCheckpointStep !== null && Math.random() < 0.25 ? lastCheckpointStep : batch * BATCH_STEPS;
  say('C');
  await store.checkpoints.writeAndRecord(
    run.id,
    step,
    'full',
    (dir) => {
      fs.writeFileSync(path.join(dir, 'model.safetensors'), crypto.randomBytes(64 * 1024 + Math.floor(Math.random() * 448 * 1024)));
      fs.mkdirSync(path.join(dir, 'optimizer'));
      fs.writeFileSync(path.join(dir, 'optimizer', 'state.bin'), crypto.randomBytes(Math.floor(Math.random() * 256 * 1024)));
      fs.writeFileSync(path.join(dir, 'trainer_state.json'), JSON.stringify({ step, batch }));
    },
    { loss: metricValue('loss', step) },
  );
  lastCheckpointStep = step;
  say('.');
  const old = store.checkpoints.list(run.id).slice(0, -KEEP_CHECKPOINTS);
  if (old.length) {
    say('R');
    for (const c of old) store.checkpoints.remove(c.id);
    say('.');
  }
}
