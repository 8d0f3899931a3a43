// mlw job export (mlw finetune's flags) → train.py → mlw job import: the job
// becomes a run in the store with its curve, checkpoints and machine; run
// further and imported again, the same run is extended with the new steps and
// checkpoints, and completed with its model recorded.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../engine/store/open';
import { EngineService } from '../engine/server/service';
import { requests, type Result } from '../engine/protocol/protocol';
import type { JobImportResult } from '../engine/job/spec';
import { mlwProcess } from './helpers/mlw-process';
import { arithmeticChats, tempDir, tinyModelDir, writeJsonl } from './helpers/train-fixtures';
import { jobCurve, runJob, torchMissing, torchPython } from './helpers/torch-job';

const py = torchPython();
const missing = torchMissing(py);
const tmp = tempDir('job-import');
const home = path.join(tmp, 'home');
const model = tinyModelDir(tmp, 'tiny-ls-immediate');
const data = writeJsonl(path.join(tmp, 'train.jsonl'), arithmeticChats(40));
const job = path.join(tmp, 'job');

async function importJson(): Promise<JobImportResult> {
  const r = await mlwProcess(['--home', home, 'job', 'import', job, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as JobImportResult;
}

describe.skipIf(missing !== null)('mlw job export / import', () => {
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('records the job as a run with its curve, checkpoints and machine, and extends it when imported again', async () => {
    const flags = ['--data', data, '--method', 'lora', '--lora-rank', '4', '--lora-targets', 'q,v,down', '--max-steps', '20', '--batch-size', '4'];
    const exported = await mlwProcess([
      'job',
      'export',
      model,
      ...flags,
      '--grad-accum',
      '2',
      '--save-every',
      '5',
      '--eval-every',
      '10',
      '--seed',
      '2',
      '--out',
      job,
    ]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stderr).toContain('torchrun --nproc_per_node=');
    const spec = JSON.parse(fs.readFileSync(path.join(job, 'job.json'), 'utf8'));
    expect(spec).toMatchObject({
      method: 'lora',
      totalSteps: 20,
      lora: { rank: 4, targets: ['q', 'v', 'down'] },
      train: { batchSize: 4, gradAccum: 2, seed: 2 },
    });
    for (const f of ['README.md', 'job.sbatch', 'sky.yaml', 'train.py', 'model/config.json', 'init/adapter_model.safetensors', 'data/plan.safetensors'])
      expect(fs.existsSync(path.join(job, f)), f).toBe(true);

    runJob(py!, job, 1, ['--max-steps', '10']); // stops at step 10 with a checkpoint, as a preempted job would
    const first = await importJson();
    expect(first).toMatchObject({ created: true, status: 'paused', lastStep: 10, newSteps: 10, newCheckpoints: [5, 10], modelId: null });
    expect(first.machine).toMatchObject({ worldSize: 1, gpus: [] });

    runJob(py!, job, 1);
    const second = await importJson();
    expect(second).toMatchObject({ runId: first.runId, created: false, status: 'completed', lastStep: 20, newSteps: 10, newCheckpoints: [15, 20] });
    expect(second.modelId).not.toBeNull();

    const store = openStore({ home });
    try {
      const run = store.runs.get(first.runId);
      expect(run).toMatchObject({ kind: 'finetune', status: 'completed' });
      expect(run.config).toMatchObject({ method: 'lora', job: { id: spec.id, dir: job, machine: { worldSize: 1 } } });
      expect(store.metrics.curve(run.id, 'loss').values).toEqual(jobCurve(job));
      expect(store.metrics.curve(run.id, 'val_loss').steps).toEqual([10, 20]);
      const checkpoints = store.checkpoints.list(run.id);
      expect(checkpoints.map((c) => c.step)).toEqual([5, 10, 15, 20]);
      for (const c of checkpoints)
        expect(fs.readdirSync(c.path).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json']);
      expect(store.models.get(second.modelId!)).toMatchObject({ format: 'peft-lora', runId: run.id });
    } finally {
      store.close();
    }
    expect(await importJson()).toMatchObject({ runId: first.runId, newSteps: 0, newCheckpoints: [] }); // nothing new
  });

  it('job.export takes the wizard’s request and job.import puts the run on the Runs page (protocol)', async () => {
    const service = new EngineService(openStore({ home: path.join(tmp, 'svc-home') }), 'test');
    try {
      const added = (await service.handle('models.import', { path: model })) as Result<'models.import'>;
      const outDir = path.join(tmp, 'svc-job');
      const request = { modelId: added.id, data, method: 'full', train: { maxSteps: 4, batchSize: 4, saveEvery: 2 }, outDir };
      const exported = (await service.handle('job.export', request)) as Result<'job.export'>;
      expect(requests['job.export'].result.parse(exported)).toMatchObject({ dir: outDir, totalSteps: 4 });
      runJob(py!, outDir, 1);
      const imported = (await service.handle('job.import', { dir: outDir })) as Result<'job.import'>;
      expect(requests['job.import'].result.parse(imported)).toMatchObject({ created: true, status: 'completed', lastStep: 4, newCheckpoints: [2, 4] });
      const summaries = (await service.handle('runs.summaries', {})) as Result<'runs.summaries'>;
      expect(summaries.find((r) => r.run.id === imported.runId)).toMatchObject({ lastStep: 4, run: { modelId: added.id, status: 'completed' } });
    } finally {
      await service.close();
    }
  });
});
