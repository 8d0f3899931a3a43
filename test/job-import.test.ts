// mlw job export (mlw finetune's flags) → train.py → mlw job import: the job
// becomes a run in the store with its curve, checkpoints and machine; run
// further and imported again, the same run is extended with the new steps and
// checkpoints, and completed with its model recorded.
import type { ChildProcess } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { openStore } from '../engine/store/open';
import { EngineService } from '../engine/server/service';
import { JOB_RESULTS, requests, type EngineEvent, type JobSnapshot, type Result } from '../engine/protocol/protocol';
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

  it('job.export takes the wizard’s request as a job in a child process, and job.import puts the run on the Runs page (protocol)', async () => {
    await initBackend(); // as the engine does at start: its child jobs run on the same backend
    const service = new EngineService(openStore({ home: path.join(tmp, 'svc-home') }), 'test');
    const ended = new Map<string, JobSnapshot>();
    service.events.on('event', (e: EngineEvent) => {
      if (e.type === 'job' && e.job.state !== 'running') ended.set(e.job.id, e.job);
    });
    const jobEnd = async (jobId: string): Promise<JobSnapshot> => {
      while (!ended.has(jobId)) await new Promise((r) => setTimeout(r, 20));
      return ended.get(jobId)!;
    };
    // Every process the service forks, seen as it is created: the export must run in one (engine/jobs/child.ts), not in the service's.
    const forked: ChildProcess[] = [];
    const onFork = (m: unknown) => forked.push((m as { process: ChildProcess }).process);
    diagnostics.subscribe('child_process', onFork);
    try {
      const added = (await service.handle('models.import', { path: model })) as Result<'models.import'>;
      const outDir = path.join(tmp, 'svc-job');
      const request = { modelId: added.id, data, method: 'full', train: { maxSteps: 4, batchSize: 4, saveEvery: 2 }, outDir };
      const started = requests['job.export'].result.parse(await service.handle('job.export', request));
      const done = await jobEnd(started.jobId);
      expect(done, done.error).toMatchObject({ kind: 'job-export', state: 'done' });
      expect(JOB_RESULTS['job-export'].parse(done.result)).toMatchObject({ dir: outDir, totalSteps: 4 });
      const children = forked.filter((c) => c.spawnargs.some((a) => a.endsWith(path.join('engine', 'jobs', 'child.ts'))));
      expect(children).toHaveLength(1);
      expect(children[0].pid).not.toBe(process.pid);
      expect(children[0].exitCode ?? (await once(children[0], 'exit'))[0]).toBe(0);

      // A failed export ends its job with the reason in one line (the folder is not empty now).
      const again = requests['job.export'].result.parse(await service.handle('job.export', request));
      const failed = await jobEnd(again.jobId);
      expect(failed.state).toBe('failed');
      expect(failed.error).toBe(`${outDir}: not empty (a job folder is written into a new or empty folder)`);

      runJob(py!, outDir, 1);
      const imported = (await service.handle('job.import', { dir: outDir })) as Result<'job.import'>;
      expect(requests['job.import'].result.parse(imported)).toMatchObject({ created: true, status: 'completed', lastStep: 4, newCheckpoints: [2, 4] });
      const summaries = (await service.handle('runs.summaries', {})) as Result<'runs.summaries'>;
      expect(summaries.find((r) => r.run.id === imported.runId)).toMatchObject({ lastStep: 4, run: { modelId: added.id, status: 'completed' } });
    } finally {
      diagnostics.unsubscribe('child_process', onFork);
      await service.close();
    }
  });
});
