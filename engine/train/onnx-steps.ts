// Training steps on ONNX Runtime: one session runs the training graph of
// engine/onnx/training-graph.ts (forward pass, loss and gradients in one
// call), the trainer keeps what changes in JavaScript.
//
//   frozen weights     initializers of the session, read from the model folder
//                      tensor by tensor into a temporary external-data file
//                      that ONNX Runtime loads (never all in JavaScript at once:
//                      the graph's own weights buffer is left untouched)
//   trained tensors    Float32Arrays fed to every run: all weights in the
//                      checkpoint's layout (full), or the adapters' A [in, r] and
//                      B [r, out] (LoRA); AdamW (ArrayAdamW) updates them in place
//   gradients          the graph's outputs, summed over the micro-batches of a step
//
// Dropout keep-masks are drawn here from the counter-based RNG: mask of
// (micro-batch key, effective layer, adapted linear), so a resumed run drops
// out exactly what the uninterrupted one did. The graph computes gradients
// with a fixed thread count and no randomness: the same inputs give the same
// bits, and a run resumed from a checkpoint (float32 weights and moments)
// continues bit for bit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { layerSchedule, type MobileLLMConfig } from '../model/config';
import { LINEAR_KEYS, tensorSpecs, type LinearKey, type TensorSpec } from '../model/layout';
import { checkTensorNames, openWeights, readConfig, writeTensorFiles } from '../io/checkpoint';
import { finiteFloat32, float32Raw, type ArrayTensor, type RawTensor } from '../io/raw-tensor';
import { loadOrt, type Ort } from '../onnx/ort';
import { cpuSessionOptions } from '../onnx/session';
import { TRAINING_WEIGHTS_FILE, buildTrainingGraph, gradName, type Trained } from '../onnx/training-graph';
import { batchArrays, type TokenizedExample } from './batching';
import { writeTrainingState, type TrainerState } from './checkpoints';
import type { LoraSettings } from './config';
import { initialLoraA, loraScale, peftKey, readAdapterArrays, writeAdapterTensors } from './lora';
import { ArrayAdamW, clipScale, globalNormArrays, type AdamWOptions } from './optimizer';
import { rngFor } from './rng';
import type { StepRuntime } from './trainer';

/**
 * How ONNX Runtime holds memory while training. fast: its arena keeps the
 * step's buffers between runs and weights are prepacked for the matmul
 * kernels (measured on 125M, batch 4×256: LoRA ~300 tokens/s at ~5 GB peak);
 * lean: buffers go back to the system after each run and weights stay as they
 * are (~215 tokens/s at ~1.1 GB). Default: fast on machines with at least
 * FAST_MIN_MEMORY, else lean; MLW_TRAIN_MEMORY=fast|lean decides.
 */
export type OnnxMemoryMode = 'fast' | 'lean';
const FAST_MIN_MEMORY = 16 * 2 ** 30;

export function onnxMemoryMode(): OnnxMemoryMode {
  const forced = process.env.MLW_TRAIN_MEMORY;
  if (forced === 'fast' || forced === 'lean') return forced;
  return os.totalmem() >= FAST_MIN_MEMORY ? 'fast' : 'lean';
}

/**
 * Whether the training graph recomputes each layer's forward pass before its
 * backward (training-graph.ts) instead of keeping every layer's activations:
 * MLW_TRAIN_RECOMPUTE=1|0 decides, else `wanted`, else where memory is tight
 * (lean memory mode). Measured on 125M, batch 4×256, in one quiet sitting:
 * LoRA r8 q,v 297 tokens/s at 5.4 GB peak without, 190 at 2.4 GB with (lean
 * memory with recompute: 192 at 2.8 GB); r16 all 224 at 6.0 GB without, 154
 * at 2.2 GB with. The extra forward pass costs a third of the speed, so a
 * machine with room keeps the activations.
 */
export function onnxRecompute(wanted?: boolean): boolean {
  const forced = process.env.MLW_TRAIN_RECOMPUTE;
  if (forced === '1' || forced === '0') return forced === '1';
  return wanted ?? onnxMemoryMode() === 'lean';
}

/** Frozen tensors of at least this size go straight to the weights file (always external data in the graph). */
const FILE_MIN_BYTES = 1 << 16;

export interface OnnxStepsInput {
  /** The base model folder (float weights; tokenizer files; the adapter's base_model_name_or_path). */
  baseModelDir: string;
  /** Full fine-tuning, or LoRA with these settings. */
  lora: LoraSettings | null;
  /** A checkpoint to continue from (a model folder for full, an adapter folder for LoRA), with its moments and step. */
  resume?: { dir: string; optimizer: Map<string, ArrayTensor>; step: number };
  /** Seed of fresh adapters. */
  seed: number;
  adamw: AdamWOptions;
  /** Intra-op threads (default: every core). */
  threads?: number;
  /** Recompute each layer's forward before its backward (default: onnxRecompute()). */
  recompute?: boolean;
}

/** Reads every tensor of a float model folder (checkpoint layout). */
function readFloatTensors(dir: string, config: MobileLLMConfig, specs: TensorSpec[]): Map<string, ArrayTensor> {
  const { source } = openWeights(dir);
  try {
    checkTensorNames(source, config);
    return new Map(specs.map((s) => [s.name, { values: finiteFloat32(source.read(s.name), source.path, s.name), shape: s.shape }]));
  } finally {
    source.close();
  }
}

/** The adapters to train: from a checkpoint (checked against the settings), or fresh (A seeded, B zero). */
function adapterTensors(specs: TensorSpec[], lora: LoraSettings, seed: number, from: string | null): Map<string, ArrayTensor> {
  const saved = from ? readAdapterArrays(from) : null;
  const out = new Map<string, ArrayTensor>();
  for (const s of specs) {
    if (s.kind !== 'linear' || !lora.targets.includes(s.key)) continue;
    const [nOut, nIn] = s.shape;
    const wanted: [string, number[], () => Float32Array][] = [
      [peftKey(s.block!, s.key, 'A'), [nIn, lora.rank], () => initialLoraA(seed, s.block!, s.key, nIn, lora.rank)],
      [peftKey(s.block!, s.key, 'B'), [lora.rank, nOut], () => new Float32Array(lora.rank * nOut)],
    ];
    for (const [name, shape, fresh] of wanted) {
      if (!saved) {
        out.set(name, { values: fresh(), shape });
        continue;
      }
      const t = saved.get(name);
      if (!t) throw new Error(`${from}: adapter has no tensor "${name}"`);
      if (t.shape.join() !== shape.join())
        throw new Error(`${from}: adapter tensor "${name}" is [${[...t.shape].reverse()}], expected [${[...shape].reverse()}]`);
      out.set(name, t);
    }
  }
  if (saved) {
    const extra = [...saved.keys()].find((k) => !out.has(k));
    if (extra) throw new Error(`${from}: unexpected adapter tensor "${extra}" (not a target of this run)`);
  }
  return out;
}

export class OnnxSteps implements StepRuntime {
  readonly runtime = 'onnx';
  readonly mode: string;
  /** Where the time went, in milliseconds since opening: building feeds (masks included), the session's runs (kernels, and copying the outputs out), summing micro-batches, clipping and AdamW. */
  readonly timings = { feeds: 0, run: 0, accumulate: 0, optimizer: 0 };
  /** The step's gradients (valid while `pending`), and where later micro-batches' land before they are added. */
  private readonly sums: Map<string, Float32Array>;
  private scratch: Map<string, Float32Array> | null = null;
  private pending = false;

  private constructor(
    private readonly ort: Ort,
    private readonly session: InferenceSession,
    private readonly inp: OnnxStepsInput,
    private readonly config: MobileLLMConfig,
    /** Trained tensors by input name, in the graph's input order. */
    private readonly params: Map<string, ArrayTensor>,
    private readonly masks: { name: string; layer: number; width: number }[],
    private readonly opt: ArrayAdamW,
    memory: OnnxMemoryMode,
    recompute: boolean,
  ) {
    this.mode = `graph${recompute ? ', recompute per layer' : ''}, ${memory} memory`;
    this.sums = this.gradBuffers();
  }

  static async open(inp: OnnxStepsInput): Promise<OnnxSteps> {
    const ort = await loadOrt();
    const config = readConfig(inp.baseModelDir);
    const specs = tensorSpecs(config);
    const from = inp.resume?.dir ?? null;
    let params: Map<string, ArrayTensor>;
    let trained: Trained;
    // Frozen weights are read from the base folder (LoRA); full fine-tuning reads its own tensors and freezes none.
    const base = inp.lora ? openWeights(inp.baseModelDir).source : null;
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-train-graph-'));
    const weightsFd = fs.openSync(path.join(scratch, TRAINING_WEIGHTS_FILE), 'w');
    const written: [number, number][] = []; // [offset, length] of the frozen tensors in the file
    try {
      if (inp.lora && base) {
        checkTensorNames(base, config);
        params = adapterTensors(specs, inp.lora, inp.seed, from);
        const { rank, targets, dropout } = inp.lora;
        trained = {
          kind: 'lora',
          targets,
          rank,
          scale: loraScale(inp.lora),
          dropout: dropout > 0,
          names: (b, key) => ({ a: peftKey(b, key, 'A'), b: peftKey(b, key, 'B') }),
        };
      } else {
        params = readFloatTensors(from ?? inp.baseModelDir, config, specs);
        trained = { kind: 'full' };
      }
      const recompute = onnxRecompute(inp.recompute);
      const graph = buildTrainingGraph({
        config,
        specs,
        schedule: layerSchedule(config),
        trained,
        recompute,
        frozen: (s) => ({
          byteLength: s.shape.reduce((n, d) => n * d, 4),
          // Into the file at the tensor's place in the graph's weights (dst, never touched: its pages stay unallocated).
          write: (dst) => {
            if (!base) throw new Error(`${s.name}: full fine-tuning freezes no tensor`);
            const v = finiteFloat32(base.read(s.name), base.path, s.name);
            // Small tensors may be inside the model itself: those are set where the graph puts them.
            if (v.byteLength < FILE_MIN_BYTES) dst.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
            else {
              fs.writeSync(weightsFd, v, 0, v.byteLength, dst.byteOffset);
              written.push([dst.byteOffset, v.byteLength]);
            }
          },
        }),
      });
      // The graph's input order, so that feeds and the optimizer walk the same list.
      params = new Map(graph.params.map((p) => [p.name, params.get(p.name)!]));
      const memory = onnxMemoryMode();
      const options = cpuSessionOptions(inp.threads ?? os.availableParallelism());
      // The rest of the file: what the graph wrote itself (the RoPE tables, constants).
      written.sort((a, b) => a[0] - b[0]);
      let at = 0;
      for (const [offset, length] of [...written, [graph.weights.byteLength, 0]]) {
        if (offset > at) fs.writeSync(weightsFd, graph.weights, at, offset - at, at);
        at = offset + length;
      }
      fs.closeSync(weightsFd);
      const modelPath = path.join(scratch, 'training.onnx');
      fs.writeFileSync(modelPath, graph.model);
      const session = await ort.InferenceSession.create(modelPath, {
        ...options,
        enableCpuMemArena: memory === 'fast',
        extra: { ...options.extra, session: { ...(options.extra?.session as object), disable_prepacking: memory === 'lean' ? '1' : '0' } },
      });
      const opt = new ArrayAdamW(params, inp.adamw);
      if (inp.resume) opt.load(inp.resume.optimizer, inp.resume.step);
      return new OnnxSteps(ort, session, inp, config, params, graph.masks, opt, memory, recompute);
    } finally {
      base?.close();
      try {
        fs.closeSync(weightsFd);
      } catch {
        // already closed
      }
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }

  private feeds(rows: TokenizedExample[], denom: number, padId: number, dropoutKey: number | null): Record<string, Tensor> {
    const { Tensor } = this.ort;
    const { B, T, ids, targets, weights } = batchArrays(rows, padId);
    const N = B * T;
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), [B, T]),
      targets: new Tensor('int64', BigInt64Array.from(targets, BigInt), [N]),
      weights: new Tensor('float32', weights, [N]),
      inv_denom: new Tensor('float32', Float32Array.of(1 / Math.max(1, denom)), []),
    };
    for (const [name, p] of this.params) feeds[name] = new Tensor('float32', p.values, p.shape);
    const rate = this.inp.lora?.dropout ?? 0;
    for (const m of this.masks) {
      const keep = new Float32Array(N * m.width);
      if (dropoutKey === null) keep.fill(1);
      else {
        const site = LINEAR_KEYS.indexOf(m.name.split('.').at(-1) as LinearKey);
        const random = rngFor(dropoutKey, m.layer, site);
        const kept = 1 / (1 - rate);
        for (let i = 0; i < keep.length; i++) keep[i] = random() < rate ? 0 : kept;
      }
      feeds[m.name] = new Tensor('float32', keep, [N, m.width]);
    }
    return feeds;
  }

  async accumulate(rows: TokenizedExample[], denom: number, padId: number, dropoutKey: number): Promise<number> {
    const t0 = performance.now();
    const feeds = this.feeds(rows, denom, padId, dropoutKey);
    // Gradients land in buffers kept across steps: the step's sum for its first micro-batch, a scratch set for the others.
    const first = !this.pending;
    const into = first ? this.sums : (this.scratch ??= this.gradBuffers());
    const fetches: Record<string, Tensor | null> = { loss: null };
    for (const [name, buf] of into) fetches[gradName(name)] = new this.ort.Tensor('float32', buf, this.params.get(name)!.shape);
    const t1 = performance.now();
    const out = await this.session.run(feeds, fetches as Record<string, Tensor>);
    const t2 = performance.now();
    if (!first) {
      for (const [name, sum] of this.sums) {
        const g = into.get(name)!;
        for (let i = 0; i < sum.length; i++) sum[i] += g[i];
      }
    }
    this.pending = true;
    const t3 = performance.now();
    this.timings.feeds += t1 - t0;
    this.timings.run += t2 - t1;
    this.timings.accumulate += t3 - t2;
    return (out.loss.data as Float32Array)[0];
  }

  private gradBuffers(): Map<string, Float32Array> {
    return new Map([...this.params].map(([name, p]) => [name, new Float32Array(p.values.length)]));
  }

  discard(): void {
    this.pending = false;
  }

  update(lr: number, maxNorm: number): number {
    if (!this.pending) throw new Error('update: no gradients accumulated');
    const t0 = performance.now();
    const norm = globalNormArrays(this.sums);
    this.opt.apply(this.sums, lr, clipScale(norm, maxNorm));
    this.pending = false;
    this.timings.optimizer += performance.now() - t0;
    return norm;
  }

  async evalLoss(rows: TokenizedExample[], denom: number, padId: number): Promise<number> {
    const out = await this.session.run(this.feeds(rows, denom, padId, null), ['loss']);
    return (out.loss.data as Float32Array)[0];
  }

  writeCheckpoint(dir: string, state: TrainerState): void {
    const base = this.inp.baseModelDir;
    if (this.inp.lora) writeAdapterTensors(this.params, this.inp.lora, dir, path.resolve(base));
    else {
      const tensors = [...this.params].map(([name, t]): [string, RawTensor] => [name, float32Raw(t.values, t.shape)]);
      writeTensorFiles(
        this.config,
        tensors.map(([name, t]) => [name, t.shape]),
        tensors,
        dir,
        'float32',
        { tokenizerFrom: base },
      );
    }
    writeTrainingState(dir, this.opt.state(), state);
  }

  async dispose(): Promise<void> {
    this.pending = false;
    await this.session.release();
  }
}
