// mlw inspect / share / unshare: layer sharing seen and changed (engine/inspect).
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { describeBackend, initBackend, type BackendName } from '../../backend/select';
import { SHARED_STRATEGIES, SHARING_STRATEGIES, sharingSchedule, type LayerSharing, type SharedStrategy, type SharingStrategy } from '../../model/sharing';
import { CONFIG_LIMITS } from '../../model/limits';
import { PRESET_NAMES } from '../../model/presets';
import { RUNTIME_NAMES, type RuntimeName } from '../../runtime/runtime';
import { loadTokenizer } from '../../tokenizer/tokenizer';
import { readModelFolder } from '../../folder/kind';
import { openStore } from '../../store/open';
import { inspect, isPresetName, type InspectOptions } from '../../inspect/report';
import { convertJob, type Conversion } from '../../inspect/convert';
import { recordConversion, recordInspection } from '../../inspect/record';
import { BLOCK_PICKS, type BlockPick, type ConversionReport, type InspectReport, type StrategyCosts } from '../../inspect/schema';
import { cliJob } from '../progress';
import { UsageError } from '../errors';
import { formatBytes, parseIdList, parseNumber, printJson } from '../format';

interface GlobalOpts {
  backend?: BackendName;
  home?: string;
}

// ---------------------------------------------------------------- human output

const si = (n: number, units: [number, string][]): string => {
  const [div, unit] = units.find(([d]) => Math.abs(n) >= d) ?? units[units.length - 1];
  return `${(n / div).toFixed(div === 1 ? 0 : 1)}${unit}`;
};
const params = (n: number) =>
  si(n, [
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'k'],
    [1, ''],
  ]);
const flops = (n: number) =>
  si(n, [
    [1e9, ' G'],
    [1e6, ' M'],
    [1e3, ' k'],
    [1, ' '],
  ]);

function sharingLabel(s: LayerSharing): string {
  return s.strategy === 'none' ? 'none' : `${s.strategy} ×${s.repeats}`;
}

function rowLabel(r: Pick<StrategyCosts, 'variant' | 'sharing' | 'physicalBlocks'>): string {
  if (r.variant === 'same-storage') return 'none (same storage)';
  if (r.variant === 'same-depth') return `none, ${r.physicalBlocks} blocks (same depth)`;
  return sharingLabel(r.sharing);
}

/** Columns padded to their widest cell; the first left-aligned, the rest right-aligned. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')).join('\n');
}

/** Blocks as rows, effective layers as columns: █ where a block runs. */
function sharingDiagram(numBlocks: number, sharing: LayerSharing): string {
  const schedule = sharingSchedule(numBlocks, sharing);
  const L = schedule.length;
  const label = (s: string) => s.padEnd(10);
  let ruler = '';
  for (let k = 0; k < L; k += 10) ruler += String(k).padEnd(10);
  const lines = [`${sharingLabel(sharing)}: ${numBlocks} blocks → ${L} effective layers`, `${label('layer')}${ruler.trimEnd()}`];
  for (let b = 0; b < numBlocks; b++) lines.push(`${label(`block ${b}`)}${schedule.map((x) => (x === b ? '█' : '·')).join('')}`);
  return lines.join('\n');
}

function describeInspection(r: InspectReport): string {
  const m = r.model;
  const out: string[] = [];
  out.push(
    `${r.target.name} (${r.target.kind}): hidden ${m.hiddenSize}, intermediate ${m.intermediateSize}, heads ${m.numHeads}/${m.numKvHeads} kv × ${m.headDim}, ` +
      `vocab ${m.vocabSize}, ${m.numBlocks} blocks, sharing ${sharingLabel(m.sharing)}`,
  );
  out.push('', `costs (FLOPs per token with ${r.costs.contextTokens} tokens of context; * = selected)`);
  const sel = r.selected;
  const head = ['variant', 'blocks', 'layers', 'params', 'fp16', 'int4', 'FLOPs/token', 'KV fp16/token'];
  out.push(
    table([
      head,
      ...r.costs.rows.map((c) => [
        `${c.variant !== 'same-depth' && c.sharing.strategy === sel.strategy && c.sharing.repeats === sel.repeats ? '* ' : '  '}${rowLabel(c)}`,
        String(c.physicalBlocks),
        String(c.effectiveDepth),
        params(c.params.total),
        formatBytes(c.bytes.fp16),
        formatBytes(c.bytes.int4),
        flops(c.flops.atContext),
        formatBytes(c.kvCacheBytesPerToken.fp16),
      ]),
    ]),
  );
  if (r.latency) {
    const l = r.latency;
    out.push(
      '',
      `latency on ${l.runtimeDescription}, random weights, ${l.physicalBlocks} blocks: prefill of ${l.contextTokens} tokens (median of ${l.prefills * l.rounds}), ` +
        `decode of one token after ${l.contextTokens} (median of ${l.steps * l.rounds}); ${l.together ? 'variants interleaved run by run' : 'one variant open at a time, round after round'}`,
      ...l.skipped.map((why) => `skipped ${why}`),
    );
    out.push(
      table([
        ['variant', 'blocks', 'layers', 'decode ms', 'q1–q3', '× same storage', '× same depth', 'prefill ms', 'q1–q3', '× same storage', '× same depth'],
        ...l.rows.map((x) => [
          rowLabel(x),
          String(x.physicalBlocks),
          String(x.effectiveDepth),
          ...[x.decode, x.prefill].flatMap((t) => [
            t.ms.toFixed(2),
            `${t.q1.toFixed(1)}–${t.q3.toFixed(1)}`,
            t.vsSameStorage.toFixed(3),
            t.vsSameDepth.toFixed(3),
          ]),
        ]),
      ]),
    );
  }
  out.push('', sharingDiagram(m.numBlocks, sel));
  const a = r.analysis;
  if (a?.activations) {
    const x = a.activations;
    const f = (v: number | null) => (v === null ? '-' : v.toFixed(3));
    out.push(
      '',
      `activations on the ${x.probe.source} probe (${x.probe.tokens} tokens); embedding rms ${x.embeddingRms}, uniform-attention entropy ${x.attnEntropyUniform}`,
    );
    out.push(
      table([
        ['layer', 'block', 'rms', 'cos(in,out)', 'cos(Δ,Δprev)', 'attn rms', 'mlp rms', 'entropy (head mean)'],
        ...x.layers.block.map((b, k) => [
          String(k),
          String(b),
          f(x.layers.hiddenRms[k]),
          f(x.layers.cosInOut[k]),
          f(x.layers.cosUpdatePrev[k]),
          f(x.layers.attnUpdateRms[k]),
          f(x.layers.mlpUpdateRms[k]),
          f(x.layers.attnEntropy[k].reduce((s, e) => s + e, 0) / x.layers.attnEntropy[k].length),
        ]),
      ]),
    );
  }
  if (a) {
    const sim = a.weights.similarity.all;
    const pairs = sim.flatMap((row, i) => row.slice(i + 1).map((v, d) => ({ i, j: i + 1 + d, v }))).sort((p, q) => q.v - p.v);
    out.push('', 'most alike physical blocks (cosine of all seven projections)');
    out.push(pairs.length ? table([['blocks', 'cosine'], ...pairs.slice(0, 8).map((p) => [`${p.i} · ${p.j}`, p.v.toFixed(4)])]) : '(one block)');
  }
  return out.join('\n');
}

function describeConversion(r: ConversionReport): string {
  const s = r.source;
  const o = r.output;
  const lines = [
    `${r.operation}${r.pick ? ` (${r.pick})` : ''}: ${s.numBlocks} blocks, ${sharingLabel(s.sharing)} → ${o.numBlocks} blocks, ${sharingLabel(o.sharing)}`,
    `parameters ${params(s.params)} → ${params(o.params)}; written to ${o.path} (${o.dtype})`,
    `block map (output ← source): ${r.blockMap.map((src, i) => `${i}←${src.join('+')}`).join(' ')}`,
  ];
  const p = r.perplexity;
  if (p) lines.push(`perplexity ${p.before.ppl.toFixed(3)} → ${p.after.ppl.toFixed(3)} on ${p.text} (${p.tokens} tokens, windows of ${p.window})`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- commands

function tokenizerFor(dir: string, why: string) {
  try {
    return loadTokenizer(dir);
  } catch (e) {
    throw new Error(`${why} needs the model's tokenizer: ${(e as Error).message}`, { cause: e });
  }
}

function readTextFile(file: string, flag: string): string {
  if (!fs.existsSync(file)) throw new UsageError(`${flag}: ${file} not found`);
  return fs.readFileSync(file, 'utf8');
}

interface InspectCliOpts {
  strategy?: SharingStrategy;
  repeats?: string;
  context?: string;
  probeText?: string;
  probeIds?: string;
  latency?: boolean;
  latencyBlocks?: string;
  latencySteps?: string;
  runtime?: RuntimeName;
  json?: boolean;
}

interface ConvertCliOpts {
  strategy?: SharedStrategy;
  pick: BlockPick;
  out: string;
  evalText?: string;
  json?: boolean;
}

async function runConversion(dir: string, conversion: Conversion, o: ConvertCliOpts, cmd: Command): Promise<void> {
  const g = cmd.optsWithGlobals() as GlobalOpts;
  const evalText =
    o.evalText === undefined
      ? undefined
      : {
          ids: tokenizerFor(readModelFolder(dir).tokenizerDir, '--eval-text').encode(readTextFile(o.evalText, '--eval-text'), { bos: true }),
          source: o.evalText,
        };
  const backend = await initBackend(g.backend);
  const job = cliJob(conversion.operation, { quiet: o.json });
  let report: ConversionReport;
  try {
    report = await convertJob({ modelDir: dir, outDir: o.out, conversion, evalText }, job.ctx);
  } finally {
    job.finish();
  }
  const store = openStore({ home: g.home });
  try {
    const recorded = recordConversion(store, report);
    if (o.json) return printJson({ ...recorded.report, reportId: recorded.reportId });
    console.log(describeConversion(recorded.report));
    process.stderr.write(
      `recorded as model ${recorded.report.output.modelId} (derived from model ${recorded.report.source.modelId}), report ${recorded.reportId}, in ${store.layout.root} — ${describeBackend(backend)}\n`,
    );
  } finally {
    store.close();
  }
}

export function registerInspectCommands(program: Command): void {
  program
    .command('inspect')
    .description(
      'layer sharing of a model folder or preset: schedule, storage, FLOPs, KV cache, optional measured latency; for a folder also weight and activation analysis',
    )
    .argument('<target>', `model folder, or a preset (${PRESET_NAMES.join(', ')})`)
    .addOption(new Option('--strategy <s>', "strategy to show in the diagram (default: the model's own, else immediate)").choices(SHARING_STRATEGIES))
    .option('--repeats <r>', `times each block runs in the shared rows, 2 to ${CONFIG_LIMITS.sharingRepeats} (default: the model's own, else 2)`)
    .option('--context <n>', 'tokens of context the per-token FLOPs are given at (default 512)')
    .option('--probe-text <file>', 'text to run through the model for the activation analysis (default: a built-in paragraph)')
    .option('--probe-ids <ids>', 'comma-separated token ids instead of a probe text')
    .option('--latency', 'also measure prefill and decode latency of every variant with random weights (slow for large shapes)')
    .option('--latency-blocks <n>', "physical blocks for the latency measurement (default: the model's)")
    .option('--latency-steps <n>', 'timed decode steps per variant and round (default 32)')
    .addOption(
      new Option('--runtime <name>', "runtime of the latency measurement (default: MLW_RUNTIME, else onnx, the chat's, when it loads, else tfjs)").choices(
        RUNTIME_NAMES,
      ),
    )
    .option('--json', 'print the report as JSON (engine/inspect/schema.ts: InspectReport)')
    .action(async (target: string, o: InspectCliOpts, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const preset = isPresetName(target);
      if (preset && (o.probeText !== undefined || o.probeIds !== undefined))
        throw new UsageError('a preset has no weights: --probe-text and --probe-ids need a model folder');
      if (o.probeText !== undefined && o.probeIds !== undefined) throw new UsageError('inspect: give at most one of --probe-text or --probe-ids');
      if (!preset && !fs.existsSync(target)) throw new UsageError(`${target}: neither a model folder nor a preset (${PRESET_NAMES.join(', ')})`);
      const opts: InspectOptions = {
        strategy: o.strategy,
        repeats: o.repeats === undefined ? undefined : parseNumber(o.repeats, '--repeats', { integer: true, min: 2, max: CONFIG_LIMITS.sharingRepeats }),
        contextTokens: o.context === undefined ? undefined : parseNumber(o.context, '--context', { integer: true, min: 1 }),
        probe:
          o.probeIds !== undefined
            ? { ids: parseIdList(o.probeIds, '--probe-ids') }
            : o.probeText !== undefined
              ? { text: readTextFile(o.probeText, '--probe-text'), path: o.probeText }
              : undefined,
        latency: o.latency
          ? {
              blocks:
                o.latencyBlocks === undefined
                  ? undefined
                  : parseNumber(o.latencyBlocks, '--latency-blocks', { integer: true, min: 1, max: CONFIG_LIMITS.layers }),
              steps: o.latencySteps === undefined ? undefined : parseNumber(o.latencySteps, '--latency-steps', { integer: true, min: 1 }),
              runtime: o.runtime,
            }
          : undefined,
      };
      if (!o.latency && (o.latencyBlocks !== undefined || o.latencySteps !== undefined || o.runtime !== undefined))
        throw new UsageError('--latency-blocks, --latency-steps and --runtime go with --latency');
      if (!preset || o.latency) await initBackend(g.backend);
      const job = cliJob('inspect', { quiet: o.json });
      let report: InspectReport;
      try {
        report = await inspect(target, opts, job.ctx);
      } finally {
        job.finish();
      }
      let recorded = '';
      if (!preset) {
        const store = openStore({ home: g.home });
        try {
          const { modelId, reportId } = recordInspection(store, report);
          recorded = `recorded as report ${reportId} of model ${modelId} in ${store.layout.root}`;
        } finally {
          store.close();
        }
      }
      if (o.json) return printJson(report);
      console.log(describeInspection(report));
      if (recorded) process.stderr.write(`${recorded}\n`);
    });

  program
    .command('share')
    .description('make a layer-shared model of half the blocks from an unshared one (each kept block runs twice)')
    .argument('<modelDir>', 'unshared float model folder with an even number of blocks (an adapter: merged into its base first)')
    .addOption(new Option('--strategy <s>', 'sharing strategy').choices(SHARED_STRATEGIES).makeOptionMandatory())
    .addOption(new Option('--pick <how>', 'keep blocks 0, 2, 4, … or average each adjacent pair').choices(BLOCK_PICKS).default('every-other'))
    .requiredOption('--out <dir>', 'new folder for the shared model')
    .option('--eval-text <file>', 'text for the perplexity before and after')
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, o: ConvertCliOpts, cmd: Command) => {
      await runConversion(dir, { operation: 'share', strategy: o.strategy!, pick: o.pick }, o, cmd);
    });

  program
    .command('unshare')
    .description('give every effective layer of a layer-shared model its own copy of its block (same outputs; each can then be fine-tuned)')
    .argument('<modelDir>', 'layer-shared float model folder (an adapter: merged into its base first)')
    .requiredOption('--out <dir>', 'new folder for the unshared model')
    .option('--eval-text <file>', 'text for the perplexity before and after')
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, o: ConvertCliOpts, cmd: Command) => {
      await runConversion(dir, { operation: 'unshare' }, o, cmd);
    });
}
