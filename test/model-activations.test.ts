// Every gated-MLP activation (hidden_act: silu, relu, gelu, gelu_pytorch_tanh —
// SwiGLU, ReGLU, GeGLU exact and tanh) against Hugging Face transformers'
// LlamaForCausalLM with that hidden_act, on the golden tiny-gqa weights
// (test/fixtures/activations, written by make_reference.py there):
//
//   TensorFlow.js        logits (1e-4); the trainer's backprop, tape and recompute:
//                        loss (1e-5) and every gradient (1e-4 of its max), every backend
//   ONNX Runtime         logits of every position (1e-4), both operator sets
//   ONNX training graph  loss (1e-5) and every gradient (1e-4 of its max), layers kept and recomputed
//   the job (train.py)   logits, loss and every gradient, on PyTorch
//   exports              hf keeps hidden_act; transformers.js runs the onnx export to the
//                        reference logits; GGUF (llama.cpp's llama is SiLU-gated only) is refused
//
// Each act's model folder is tiny-gqa's with only config.json's hidden_act changed.
// Measured against transformers 5.17 (every act, runtime and backend alike): logits
// ≤ 1.2e-5, loss ≤ 1.9e-6, gradients ≤ 6.4e-6 of their max (the table is printed at the end).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { AutoModelForCausalLM, Tensor as HfTensor, env } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { exportGguf } from '../engine/export/gguf';
import { exportHf } from '../engine/export/hf';
import { exportOnnx } from '../engine/export/onnx';
import { openOnnxRuntime } from '../engine/folder/inference';
import { readModelFolder } from '../engine/folder/kind';
import { loadModel, openWeights, readConfig } from '../engine/io/checkpoint';
import { finiteFloat32 } from '../engine/io/raw-tensor';
import { HIDDEN_ACTS, layerSchedule, type HiddenAct } from '../engine/model/config';
import { tensorSpecs } from '../engine/model/layout';
import type { MobileLLM } from '../engine/model/model';
import { ONNX_OPS } from '../engine/onnx/mobilellm';
import { loadOrt } from '../engine/onnx/ort';
import { cpuSessionOptions } from '../engine/onnx/session';
import { TRAINING_WEIGHTS_FILE, buildTrainingGraph, gradName } from '../engine/onnx/training-graph';
import { lossAndGrads, type GradMode } from '../engine/train/backprop';
import { disposeMicroBatch, microBatch } from '../engine/train/batching';
import { TEST_BACKENDS } from './helpers/backends';
import { FIXTURES, maxAbs, maxAbsDiff, referenceTensors, type ReferenceTensors } from './helpers/golden';
import { torchMissing, torchPython } from './helpers/torch-job';
import { tempDir, tinyModelDir } from './helpers/train-fixtures';

const REFERENCE = path.join(FIXTURES, 'activations');
const referenceFile = (act: HiddenAct) => path.join(REFERENCE, `${act}.safetensors`);
const absent = [...HIDDEN_ACTS.map(referenceFile), path.join(REFERENCE, 'activations.json')].filter((f) => !fs.existsSync(f));
if (absent.length) {
  console.warn(
    `skipping the activation references: ${absent.map((f) => path.relative(FIXTURES, f)).join(', ')} missing (run test/fixtures/activations/make_reference.py with transformers)`,
  );
}
const summary = absent.length
  ? null
  : (JSON.parse(fs.readFileSync(path.join(REFERENCE, 'activations.json'), 'utf8')) as { cases: Record<HiddenAct, { loss: number }> });

let tmp: string;
/** act → the tiny-gqa model folder with that hidden_act. */
const folders = new Map<HiddenAct, string>();
/** Measured worst errors, printed at the end: "what, act" → value. */
const measured = new Map<string, number>();
const note = (what: string, act: HiddenAct, v: number) => measured.set(`${what}|${act}`, Math.max(v, measured.get(`${what}|${act}`) ?? 0));

beforeAll(() => {
  tmp = tempDir('activations');
  for (const act of HIDDEN_ACTS) {
    const dir = tinyModelDir(path.join(tmp, act));
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), hidden_act: act }, null, 1));
    folders.set(act, dir);
  }
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  if (measured.size) {
    const kinds = [...new Set([...measured.keys()].map((k) => k.split('|')[0]))];
    const rows = kinds.map((k) => `  ${k.padEnd(34)} ${HIDDEN_ACTS.map((a) => (measured.get(`${k}|${a}`)?.toExponential(1) ?? '-').padStart(18)).join('')}`);
    console.log(`worst error vs transformers, per hidden_act:\n  ${''.padEnd(34)} ${HIDDEN_ACTS.map((a) => a.padStart(18)).join('')}\n${rows.join('\n')}`);
  }
});

/** The reference's rows: input_ids [B, T] as B arrays. */
function rowsOf(ref: ReferenceTensors): number[][] {
  const { values, shape } = ref.ids();
  const [B, T] = shape;
  return Array.from({ length: B }, (_, b) => Array.from(values.subarray(b * T, (b + 1) * T)));
}

describe.skipIf(absent.length > 0).each(HIDDEN_ACTS)('hidden_act %s', (act) => {
  const ref = () => referenceTensors(referenceFile(act));
  const wantLoss = () => summary!.cases[act].loss;

  it('the folder reads as this act', () => {
    expect(readConfig(folders.get(act)!).hiddenAct).toBe(act);
  });

  describe.each(TEST_BACKENDS)('TensorFlow.js, backend %s', (backend) => {
    let model: MobileLLM;
    beforeAll(async () => {
      await initBackend(backend);
      model = loadModel(folders.get(act)!, { wrap: (t) => tf.variable(t) }).model;
    });
    afterAll(() => model.dispose());

    it('gives the reference logits (1e-4)', () => {
      const r = ref();
      const { values, shape } = r.ids();
      const logits = tf.tidy(() => model.forward(tf.tensor2d(values, shape as [number, number], 'int32')).dataSync());
      const d = maxAbsDiff(logits, r.get('logits').values);
      note(`tfjs ${backend} logits`, act, d);
      expect(d).toBeLessThan(1e-4);
    });

    it.each(['tape', 'recompute'] as GradMode[])('%s backprop gives the reference loss (1e-5) and every gradient (1e-4 of its max)', (mode) => {
      const r = ref();
      const rows = rowsOf(r);
      const T = rows[0].length;
      const batch = microBatch(
        rows.map((ids) => ({ ids, learn: new Uint8Array(T).fill(1) })),
        rows.length * (T - 1),
      );
      const params = new Map([...model.namedParams()].map(([name, p]) => [name, p.tensor as tf.Variable]));
      const { loss, grads } = lossAndGrads(model, params, batch, mode);
      note(`tfjs ${backend} ${mode} loss`, act, Math.abs(loss - wantLoss()));
      expect(Math.abs(loss - wantLoss())).toBeLessThan(1e-5);
      expect(grads.size).toBe(params.size);
      for (const [name, g] of grads) {
        const got = model.namedParams().get(name)!.transposed ? tf.tidy(() => tf.transpose(g).dataSync()) : g.dataSync();
        const want = r.get(`grad.${name}`).values;
        const err = maxAbsDiff(got, want) / maxAbs(want);
        note(`tfjs ${backend} ${mode} grad (of max)`, act, err);
        expect(err, `grad.${name}`).toBeLessThan(1e-4);
      }
      tf.dispose([...grads.values()]);
      disposeMicroBatch(batch);
    });
  });

  it.each(ONNX_OPS)('ONNX Runtime, %s operators: the reference logits of every position (1e-4)', async (ops) => {
    await initBackend();
    const runtime = await openOnnxRuntime(readModelFolder(folders.get(act)!), { ops, threads: 1 });
    try {
      const r = ref();
      const want = r.get('logits'); // [B, T, V]
      const [, T, V] = want.shape;
      for (const [b, ids] of rowsOf(r).entries()) {
        const logits = await runtime.session.forward(ids, runtime.newCache(), T);
        const d = maxAbsDiff(logits, want.values.subarray(b * T * V, (b + 1) * T * V));
        note(`onnx ${ops} logits`, act, d);
        expect(d, `row ${b}`).toBeLessThan(1e-4);
      }
    } finally {
      await runtime.dispose();
    }
  });

  it.each([false, true])('ONNX training graph (recompute per layer: %s): the reference loss (1e-5) and every gradient (1e-4 of its max)', async (recompute) => {
    const ort = await loadOrt();
    const dir = folders.get(act)!;
    const config = readConfig(dir);
    const specs = tensorSpecs(config);
    const { source } = openWeights(dir);
    const params = new Map(specs.map((s) => [s.name, { values: finiteFloat32(source.read(s.name), source.path, s.name), shape: s.shape }]));
    source.close();
    const graph = buildTrainingGraph({
      config,
      specs,
      schedule: layerSchedule(config),
      trained: { kind: 'full' },
      recompute,
      frozen: () => {
        throw new Error('nothing is frozen in full training');
      },
    });
    const session: InferenceSession = await ort.InferenceSession.create(graph.model, {
      ...cpuSessionOptions(1),
      ...(graph.weights.byteLength ? { externalData: [{ path: TRAINING_WEIGHTS_FILE, data: graph.weights }] } : {}),
    });
    try {
      const r = ref();
      const rows = rowsOf(r);
      const [B, T] = [rows.length, rows[0].length];
      // transformers' causal-LM loss: position t predicts token t+1, the last position of each row nothing.
      const targets = new BigInt64Array(B * T);
      const weights = new Float32Array(B * T);
      rows.forEach((ids, b) => ids.slice(1).forEach((id, t) => ((targets[b * T + t] = BigInt(id)), (weights[b * T + t] = 1))));
      const feeds: Record<string, Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [B, T]),
        targets: new ort.Tensor('int64', targets, [B * T]),
        weights: new ort.Tensor('float32', weights, [B * T]),
        inv_denom: new ort.Tensor('float32', Float32Array.of(1 / (B * (T - 1))), []),
      };
      for (const [n, p] of params) feeds[n] = new ort.Tensor('float32', p.values, p.shape);
      const out = (await session.run(feeds)) as Record<string, Tensor>;
      const loss = (out.loss.data as Float32Array)[0];
      note(`onnx training loss`, act, Math.abs(loss - wantLoss()));
      expect(Math.abs(loss - wantLoss())).toBeLessThan(1e-5);
      for (const n of params.keys()) {
        const want = r.get(`grad.${n}`).values;
        const err = maxAbsDiff(out[gradName(n)].data as Float32Array, want) / maxAbs(want);
        note(`onnx training grad (of max)`, act, err);
        expect(err, `grad.${n}`).toBeLessThan(1e-4);
      }
    } finally {
      await session.release();
    }
  });
});

const py = torchPython();
const noTorch = torchMissing(py);

describe.skipIf(absent.length > 0 || noTorch !== null)('the job’s PyTorch model (resources/job/train.py)', () => {
  it('gives the reference logits (1e-4), loss (1e-5) and every gradient (1e-4 of its max) for every act', () => {
    const script = path.join(import.meta.dirname, 'python', 'check_job_activations.py');
    const args = HIDDEN_ACTS.flatMap((act) => [folders.get(act)!, referenceFile(act)]);
    const r = spawnSync(py!, [script, ...args], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout) as { act: HiddenAct; loss: number; logitsDiff: number; gradRelDiff: Record<string, number> }[];
    expect(results.map((c) => c.act)).toEqual([...HIDDEN_ACTS]);
    for (const c of results) {
      note('train.py logits', c.act, c.logitsDiff);
      note('train.py loss', c.act, Math.abs(c.loss - summary!.cases[c.act].loss));
      expect(c.logitsDiff, c.act).toBeLessThan(1e-4);
      expect(Math.abs(c.loss - summary!.cases[c.act].loss), c.act).toBeLessThan(1e-5);
      for (const [name, d] of Object.entries(c.gradRelDiff)) {
        note('train.py grad (of max)', c.act, d);
        expect(d, `${c.act} grad.${name}`).toBeLessThan(1e-4);
      }
    }
  });
});

describe('exports of a non-silu model', () => {
  const act: HiddenAct = 'gelu';

  it('hf: config.json keeps hidden_act, and the folder reads back as the same model', async () => {
    const out = path.join(tmp, 'hf-gelu');
    await exportHf(folders.get(act)!, out);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ model_type: 'llama', hidden_act: act });
    expect(readConfig(out)).toEqual(readConfig(folders.get(act)!));
  });

  it('gguf: refused in one line naming hidden_act (llama.cpp’s llama architecture is SiLU-gated only)', async () => {
    const out = path.join(tmp, 'gguf-gelu');
    await expect(exportGguf(folders.get(act)!, out, { type: 'f32' })).rejects.toThrow(
      /^[^\n]*: hidden_act "gelu" cannot be written as GGUF \(llama\.cpp's llama architecture computes SiLU-gated MLPs only\)[^\n]*$/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  it.skipIf(absent.length > 0)('onnx for transformers.js: transformers.js itself gives the reference logits (1e-4)', async () => {
    const name = 'onnx-gelu';
    await exportOnnx(folders.get(act)!, path.join(tmp, name), { quantized: [] });
    expect(JSON.parse(fs.readFileSync(path.join(tmp, name, 'config.json'), 'utf8'))).toMatchObject({ hidden_act: act });
    env.allowRemoteModels = false;
    env.localModelPath = tmp;
    const theirs = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32', device: 'cpu' });
    try {
      const r = referenceTensors(referenceFile(act));
      const want = r.get('logits');
      const [, T, V] = want.shape;
      for (const [b, ids] of rowsOf(r).entries()) {
        const int64 = (v: number[]) => new HfTensor('int64', BigInt64Array.from(v, BigInt), [1, v.length]);
        const got = (await theirs({ input_ids: int64(ids), attention_mask: int64(ids.map(() => 1)) })).logits.data as Float32Array;
        const d = maxAbsDiff(got, want.values.subarray(b * T * V, (b + 1) * T * V));
        note('transformers.js (onnx export) logits', act, d);
        expect(d, `row ${b}`).toBeLessThan(1e-4);
      }
    } finally {
      await theirs.dispose();
    }
  });
});
