// The Runs page's requests through the engine service (real store, real job
// manager): runs.summaries (names, method, tokens from the newest checkpoint's
// trainer state, best validation loss, the job training it), runs.rename,
// runs.cancel (a paused run, a completed one refused) and runs.remove / resume
// refused while a job holds the run; every answer checked against its schema.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EngineService, RequestError } from '../engine/server/service';
import { openStore } from '../engine/store/open';
import { requests, type Method, type Result } from '../engine/protocol/protocol';
import { TRAINER_STATE } from '../engine/train/checkpoints';

let home: string;
let svc: EngineService;

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-run-handlers-'));
  svc = new EngineService(openStore({ home }), 'test');
});
afterEach(async () => {
  await svc.close();
  fs.rmSync(home, { recursive: true, force: true });
});

/** A request answered by the service, its result checked against the method's schema. */
async function call<M extends Method>(method: M, params: unknown): Promise<Result<M>> {
  // Parsed by M's own result schema (TypeScript sees the union of every method's here).
  return requests[method].result.parse(await svc.handle(method, params)) as Result<M>;
}

async function refusal(method: Method, params: unknown): Promise<{ code: string; message: string }> {
  try {
    await svc.handle(method, params);
  } catch (e) {
    if (e instanceof RequestError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error(`${method} was not refused`);
}

/** A fine-tuning run paused at step 12 with a checkpoint whose trainer state counts 3456 tokens. */
async function pausedRun() {
  const s = svc.store;
  const model = s.models.add({ name: 'tiny', source: 'imported', format: 'safetensors', path: '/models/tiny' });
  const dataset = s.datasets.add({ name: 'arithmetic.jsonl', path: '/data/a.jsonl', format: 'jsonl-chat', sha256: 'a'.repeat(64), rowCount: 8 });
  const run = s.runs.create({ kind: 'finetune', modelId: model.id, datasetId: dataset.id, config: { method: 'lora' } });
  s.runs.setStatus(run.id, 'running');
  s.metrics.append(run.id, [
    { step: 12, name: 'loss', value: 1.5 },
    { step: 10, name: 'val_loss', value: 1.75 },
  ]);
  const state = { step: 12, epoch: 0, seed: 0, bestValLoss: 1.75, elapsedMs: 100, tokensSeen: 3456 };
  await s.checkpoints.writeAndRecord(run.id, 12, 'lora', (dir) => fs.writeFileSync(path.join(dir, TRAINER_STATE), JSON.stringify(state)), {});
  return s.runs.setStatus(run.id, 'paused');
}

describe('the Runs page requests', () => {
  it('summarises every run; renames one', async () => {
    const run = await pausedRun();
    const other = svc.store.runs.create({ kind: 'quantize' });
    const [second, first] = await call('runs.summaries', {});
    expect(second).toMatchObject({ run: { id: other.id }, method: null, tokens: null, bestValLoss: null, jobId: null });
    expect(first).toMatchObject({
      run: { id: run.id, status: 'paused', name: null },
      modelName: 'tiny',
      datasetName: 'arithmetic.jsonl',
      method: 'lora',
      tokens: 3456,
      bestValLoss: 1.75,
      lastStep: 12,
      jobId: null,
    });
    expect((await call('runs.rename', { id: run.id, name: 'first try' })).name).toBe('first try');
    expect(await refusal('runs.rename', { id: run.id, name: 'x'.repeat(201) })).toMatchObject({ code: 'bad_request' });
  });

  it('cancels a paused run for good; a completed run cannot be cancelled', async () => {
    const run = await pausedRun();
    expect((await call('runs.cancel', { id: run.id })).status).toBe('cancelled');
    expect(await refusal('runs.cancel', { id: run.id })).toMatchObject({ code: 'conflict', message: expect.stringMatching(/is cancelled/) });
    expect(await refusal('finetune.resume', { runId: run.id })).toMatchObject({ code: 'conflict' });
  });

  it('while a job holds a run (running or waiting), the summary names it, and delete and a second resume are refused; afterwards it deletes, files too', async () => {
    const run = await pausedRun();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const jobId = svc.jobs.start(
      'pull',
      'holding the run',
      async () => (await held, { modelId: 1, name: 'm', bytes: 0, commit: 'c', alreadyRecorded: false }),
      'train',
      run.id,
    );
    expect((await call('runs.summaries', {}))[0].jobId).toBe(jobId);
    expect(await refusal('runs.remove', { id: run.id })).toEqual({ code: 'busy', message: `run ${run.id} is running: pause or cancel it first` });
    expect(await refusal('finetune.resume', { runId: run.id })).toEqual({ code: 'conflict', message: `run ${run.id} is already being resumed (running)` });
    release();
    await svc.jobs.idle();
    const folder = path.join(home, 'checkpoints', String(run.id));
    expect(fs.existsSync(folder)).toBe(true);
    expect(await call('runs.remove', { id: run.id })).toEqual({ removed: true });
    expect(fs.existsSync(folder)).toBe(false);
    expect(await call('runs.summaries', {})).toEqual([]);
  });
});
