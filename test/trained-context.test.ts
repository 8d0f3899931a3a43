// The model page's Context is the context a model was trained at when the
// workbench knows it and the config says more: the bundled demo model says
// 2048 in its config but was trained on 256-token sequences; what is made from
// it inherits that; a pre-training run's sequence length counts; an imported
// folder with nothing known shows the config's number (trainedContext null).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineService } from '../engine/server/service';
import { ensureDefaultModel } from '../engine/server/resources';
import { openStore } from '../engine/store/open';
import { tinyModelDir } from './helpers/train-fixtures';

let tmp: string;
let service: EngineService;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-trained-context-'));
  service = new EngineService(openStore({ home: path.join(tmp, 'home') }), 'test');
});
afterAll(async () => {
  await service.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('trained context', () => {
  it('the bundled model: 256 tokens trained, while its config allows 2048', () => {
    const id = ensureDefaultModel(service.store)!;
    const d = service.modelDetails(id);
    expect(d.config?.maxPositions).toBe(2048);
    expect(d.trainedContext).toBe(256);
  });

  it('a model made from it inherits its trained context', () => {
    const base = service.store.models.list().find((m) => m.name.includes('default'))!;
    const copy = path.join(tmp, 'copy');
    fs.cpSync(base.path, copy, { recursive: true });
    const child = service.store.models.add({ name: 'copy', source: 'derived', format: 'safetensors', path: copy, parentModelId: base.id });
    expect(service.modelDetails(child.id).trainedContext).toBe(256);
  });

  it("a pre-training run's sequence length is the trained context of the model it made", () => {
    const dir = tinyModelDir(tmp);
    const run = service.store.runs.create({ kind: 'pretrain', config: { seqLen: 64 } });
    const model = service.store.models.add({ name: 'pretrained', source: 'derived', format: 'safetensors', path: dir, runId: run.id });
    expect(service.modelDetails(model.id).trainedContext).toBe(64);
  });

  it('an imported folder with nothing known: null (the page shows the config, saying so)', () => {
    const dir = tinyModelDir(path.join(tmp, 'imported'));
    const model = service.store.models.add({ name: 'imported', source: 'imported', format: 'safetensors', path: dir });
    expect(service.modelDetails(model.id).trainedContext).toBeNull();
  });
});
