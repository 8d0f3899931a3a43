// Model lists stay current: the service announces a 'models' event after
// every job that adds a model (quantize, merge), and an import of a folder
// already in the store (same content digest) gives that model back as
// already imported.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { openStore } from '../engine/store/open';
import { EngineService } from '../engine/server/service';
import type { EngineEvent, JobSnapshot, Result } from '../engine/protocol/protocol';
import { requests } from '../engine/protocol/protocol';
import { loadModel } from '../engine/io/checkpoint';
import { LoraSettings } from '../engine/train/config';
import { applyLora, writeAdapterFiles } from '../engine/train/lora';
import { tinyModelDir } from './helpers/train-fixtures';

describe('model lists and imports', () => {
  let service: EngineService;
  let tmp: string;
  const events: EngineEvent[] = [];

  beforeAll(async () => {
    await initBackend();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-svc-models-'));
    service = new EngineService(openStore({ home: path.join(tmp, 'home') }), 'test');
    service.events.on('event', (e: EngineEvent) => events.push(e));
  });
  afterAll(async () => {
    await service.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const importFolder = async (dir: string) => {
    const r = (await service.handle('models.import', { path: dir })) as Result<'models.import'>;
    expect(requests['models.import'].result.safeParse(r).success).toBe(true);
    return r;
  };

  /** The job's end, then the events announced from its start on. */
  async function jobEnd(jobId: string): Promise<JobSnapshot> {
    for (;;) {
      const e = events.find((x) => x.type === 'job' && x.job.id === jobId && x.job.state !== 'running');
      if (e?.type === 'job') return e.job;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  /** Whether a 'models' event came after the job's last event. */
  const modelsAnnouncedAfter = (jobId: string) => {
    const end = events.findIndex((x) => x.type === 'job' && x.job.id === jobId && x.job.state !== 'running');
    return events.slice(end).some((x) => x.type === 'models');
  };

  it('recognises a folder imported before (same content, here or copied elsewhere) and imports a changed one', async () => {
    const dir = tinyModelDir(path.join(tmp, 'first'));
    const first = await importFolder(dir);
    expect(first.alreadyImported).toBe(false);
    expect(await importFolder(dir)).toMatchObject({ id: first.id, alreadyImported: true });
    const copy = path.join(tmp, 'copy');
    fs.cpSync(dir, copy, { recursive: true });
    expect(await importFolder(copy)).toMatchObject({ id: first.id, alreadyImported: true });
    fs.appendFileSync(path.join(copy, 'tokenizer.json'), ' ');
    const changed = await importFolder(copy);
    expect(changed.alreadyImported).toBe(false);
    expect(changed.id).not.toBe(first.id);
    expect(((await service.handle('models.list', {})) as { id: number }[]).length).toBe(2);
  });

  it("announces 'models' when a quantization adds its model", async () => {
    const source = await importFolder(tinyModelDir(path.join(tmp, 'to-quantize')));
    const { jobId } = (await service.handle('quantize.start', { modelId: source.id, method: 'w8' })) as { jobId: string };
    const end = await jobEnd(jobId);
    expect(end.state, end.error).toBe('done');
    const made = end.kind === 'quantize' ? end.result!.outputModelId : -1;
    expect(((await service.handle('models.list', {})) as { id: number }[]).map((m) => m.id)).toContain(made);
    expect(modelsAnnouncedAfter(jobId)).toBe(true);
  }, 240_000);

  it('quantizes a model without a tokenizer as a job: sizes and per-layer errors, no perplexity', async () => {
    const dir = tinyModelDir(path.join(tmp, 'no-tokenizer'));
    fs.rmSync(path.join(dir, 'tokenizer.json'));
    const source = await importFolder(dir);
    const { jobId } = (await service.handle('quantize.start', { modelId: source.id, method: 'w8a8' })) as { jobId: string };
    const end = await jobEnd(jobId);
    expect(end.state, end.error).toBe('done');
    const report = end.kind === 'quantize' ? end.result!.report : null;
    expect(report?.perplexity).toBeNull();
    expect(report?.calibration.ids).toBe('fixed random ids');
    expect(report?.size.quantizedBytes).toBeLessThan(report!.size.sourceBytes);
    expect(report?.layers.every((l) => l.output !== null || l.name === 'model.embed_tokens')).toBe(true);
  }, 240_000);

  it("merges a LoRA adapter into its base as a new model, and announces 'models'", async () => {
    const base = tinyModelDir(path.join(tmp, 'merge-base'));
    const { model } = loadModel(base);
    const adapters = applyLora(model, LoraSettings.parse({ rank: 2, alpha: 4, dropout: 0, targets: ['q', 'v'] }), { seed: 1 }, (t) => t);
    const adapterDir = path.join(tmp, 'adapter');
    fs.mkdirSync(adapterDir);
    writeAdapterFiles(adapters, adapterDir, base);
    adapters.remove();
    model.dispose();
    const adapter = await importFolder(adapterDir);
    expect(adapter.format).toBe('peft-lora');
    const { jobId } = (await service.handle('models.merge', { id: adapter.id })) as { jobId: string };
    const end = await jobEnd(jobId);
    expect(end.state, end.error).toBe('done');
    const merged = end.kind === 'merge' ? end.result! : null;
    const details = (await service.handle('models.get', { id: merged!.modelId })) as Result<'models.get'>;
    expect(details.model).toMatchObject({ name: 'adapter-merged', format: 'safetensors', parentModelId: adapter.id });
    expect(details.hasTokenizer).toBe(true);
    expect(details.problem).toBeNull();
    expect(modelsAnnouncedAfter(jobId)).toBe(true);
    await expect(service.handle('models.merge', { id: merged!.modelId })).rejects.toMatchObject({ code: 'bad_request' });
  }, 240_000);
});
