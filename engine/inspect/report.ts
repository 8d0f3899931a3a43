// The inspection report (schema.ts: InspectReport) of an official preset
// (costs only: no weights are loaded) or of a model folder (costs, weight
// analysis, and activation analysis on a probe; an adapter is analysed
// merged into its base model), with measured latency when asked for.
import fs from 'node:fs';
import path from 'node:path';
import { readModelFolder, type ModelFolder } from '../folder/kind';
import { loadModelFolder } from '../folder/load';
import type { MobileLLMConfig } from '../model/config';
import { PRESET_NAMES, preset } from '../model/presets';
import type { LayerSharing, SharingStrategy } from '../model/sharing';
import { hasTokenizer, loadTokenizer } from '../tokenizer/tokenizer';
import type { JobContext } from '../jobs/job';
import { costTable } from './schedule-costs';
import { measureDecodeLatency, type LatencyOptions } from './latency';
import { BUILTIN_PROBE, MAX_PROBE_TOKENS, activationAnalysis, weightAnalysis } from './analysis';
import { InspectReport, type ActivationAnalysis, type Analysis } from './schema';

/** What to probe the activations with: a text (tokenized with the folder's tokenizer, BOS first) or token ids. */
export type ProbeInput = { text: string; path: string | null } | { ids: number[] };

export interface InspectOptions {
  /** The strategy shown first (default: the model's own, else immediate). */
  strategy?: SharingStrategy;
  /** Repeats of the shared rows (default: the model's own, else 2). */
  repeats?: number;
  /** Where per-token FLOPs are given (default: 512, or the model's context if shorter). */
  contextTokens?: number;
  /** Folders only; default: the built-in paragraph when the folder has a tokenizer, else no activation analysis. */
  probe?: ProbeInput;
  /** Measure decode latency with these options (slow); omitted: not measured. */
  latency?: Omit<LatencyOptions, 'repeats'>;
}

/** A preset name that is not also a folder here. */
export function isPresetName(target: string): boolean {
  return PRESET_NAMES.includes(target) && !fs.existsSync(target);
}

function selectedSharing(c: MobileLLMConfig, opts: InspectOptions, repeats: number): LayerSharing {
  const strategy = opts.strategy ?? (c.sharing.strategy === 'none' ? 'immediate' : c.sharing.strategy);
  return strategy === 'none' ? { strategy, repeats: 1 } : { strategy, repeats };
}

type ProbeSource = Pick<ActivationAnalysis['probe'], 'source' | 'path'>;

/** Probe ids (cut to MAX_PROBE_TOKENS and the context) and where they came from; null without a probe. */
function probeIds(tokenizerDir: string, c: MobileLLMConfig, probe: ProbeInput | undefined): { ids: number[]; from: ProbeSource } | null {
  let ids: number[];
  let from: ProbeSource;
  if (probe && 'ids' in probe) {
    ids = probe.ids;
    from = { source: 'ids', path: null };
  } else {
    if (!probe && !hasTokenizer(tokenizerDir)) return null;
    ids = loadTokenizer(tokenizerDir).encode(probe?.text ?? BUILTIN_PROBE, { bos: true });
    from = probe ? { source: 'text', path: probe.path } : { source: 'builtin', path: null };
  }
  const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= c.vocabSize);
  if (bad !== undefined) throw new Error(`probe token id ${bad} is outside the vocabulary (size ${c.vocabSize})`);
  ids = ids.slice(0, Math.min(MAX_PROBE_TOKENS, c.maxPositions));
  if (!ids.length) throw new Error('the probe has no tokens');
  return { ids, from };
}

/** Weights, and activations when there is a probe, of the model in `folder`. */
function analyze(folder: ModelFolder, probe: ProbeInput | undefined, ctx: JobContext): Analysis {
  const { dir, config } = folder;
  if (folder.quantization) throw new Error(`${dir}: a quantized model; the analysis needs float weights (inspect its float source, or a preset for costs)`);
  const p = probeIds(folder.tokenizerDir, config, probe);
  ctx.progress({ phase: 'loading weights' });
  const { model } = loadModelFolder(folder);
  try {
    ctx.progress({ phase: 'analysing weights' });
    const weights = weightAnalysis(model);
    ctx.progress({ phase: 'analysing activations' });
    const activations = p ? activationAnalysis(model, p.ids, p.from) : null;
    return { schedule: [...model.schedule], weights, activations };
  } finally {
    model.dispose();
  }
}

/** The report of a preset name or a model folder (needs an initialized backend for analysis and latency). */
export async function inspect(target: string, opts: InspectOptions, ctx: JobContext): Promise<InspectReport> {
  const isPreset = isPresetName(target);
  const folder = isPreset ? null : readModelFolder(target);
  const c = folder ? folder.config : preset(target);
  const repeats = opts.repeats ?? (c.sharing.strategy === 'none' ? 2 : c.sharing.repeats);
  const contextTokens = opts.contextTokens ?? Math.min(512, c.maxPositions);
  const costs = { contextTokens, rows: costTable(c, repeats, contextTokens) };
  const analysis = folder ? analyze(folder, opts.probe, ctx) : null;
  const latency = opts.latency ? await measureDecodeLatency(c, { ...opts.latency, repeats }, ctx) : null;
  return InspectReport.parse({
    version: 1,
    target: isPreset ? { kind: 'preset', name: target, path: null } : { kind: 'folder', name: path.basename(path.resolve(target)), path: path.resolve(target) },
    model: {
      vocabSize: c.vocabSize,
      hiddenSize: c.hiddenSize,
      intermediateSize: c.intermediateSize,
      numBlocks: c.numBlocks,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      shareEmbedding: c.shareEmbedding,
      maxPositions: c.maxPositions,
      sharing: c.sharing,
    },
    selected: selectedSharing(c, opts, repeats),
    costs,
    latency,
    analysis,
  });
}
