// mlw finetune: a full or LoRA fine-tuning run, recorded in the store, with a
// progress bar; Ctrl-C pauses it with a checkpoint (--resume <runId> continues).
// mlw merge: a PEFT LoRA adapter folded into its base model → a plain model folder.
import path from 'node:path';
import { Option, type Command } from 'commander';
import { describeBackend, initBackend, type BackendName } from '../../backend/select';
import { openStore } from '../../store/open';
import { LINEAR_KEYS, type LinearKey } from '../../model/layout';
import { mergeLoraFolder } from '../../train/lora';
import { DECAYS } from '../../train/schedule';
import { estimateRun, prepareData, resumeFinetune, startFinetune } from '../../train/run';
import { z } from 'zod';
import { FinetuneConfig } from '../../train/config';
import { trainedRuntime } from '../../protocol/protocol';
import { formatIssues, parseDataset } from '../../train/datasets';
import { cliJob } from '../progress';
import { UsageError } from '../errors';
import { formatGigabytes, parseNumber, printJson } from '../format';

type Opts = Record<string, string | boolean | undefined>;

/** What every setting is when no flag sets it: the configuration schema's defaults (model and data have none). */
const DEFAULTS = FinetuneConfig.parse({ model: '-', data: '-' });

/** A flag that sets the number at `path` of FinetuneConfig; its help is given the schema's default. */
function numberFlag(flag: string, path: string[], help: (d: unknown) => string): { path: string[]; option: Option } {
  return { path, option: new Option(flag, help(valueAt(DEFAULTS, path))) };
}

const NUMBER_FLAGS = [
  numberFlag('--val-fraction <f>', ['valFraction'], (d) => `share of --data held out for validation (default ${d})`),
  numberFlag('--epochs <n>', ['train', 'epochs'], (d) => `passes over the data (default ${d})`),
  numberFlag('--max-steps <n>', ['train', 'maxSteps'], () => 'optimizer steps (instead of --epochs)'),
  numberFlag('--lr <rate>', ['train', 'lr'], (d) => `peak learning rate (default ${d})`),
  numberFlag('--warmup-steps <n>', ['train', 'warmupSteps'], (d) => `linear warmup steps (default ${d})`),
  numberFlag('--batch-size <n>', ['train', 'batchSize'], (d) => `sequences per micro-batch (default ${d})`),
  numberFlag('--grad-accum <n>', ['train', 'gradAccum'], (d) => `micro-batches per optimizer step (default ${d})`),
  numberFlag('--max-seq-len <n>', ['maxSeqLen'], (d) => `tokens per sequence; longer rows are cut (default ${d})`),
  numberFlag('--weight-decay <w>', ['train', 'adamw', 'weightDecay'], (d) => `AdamW decoupled weight decay (default ${d}; not on norms)`),
  numberFlag('--max-grad-norm <n>', ['train', 'maxGradNorm'], (d) => `clip the global gradient norm (default ${d}, 0 = off)`),
  numberFlag('--lora-rank <r>', ['lora', 'rank'], (d) => `LoRA rank (default ${d})`),
  numberFlag('--lora-alpha <a>', ['lora', 'alpha'], (d) => `LoRA alpha (default ${d})`),
  numberFlag('--lora-dropout <p>', ['lora', 'dropout'], (d) => `LoRA dropout (default ${d})`),
  numberFlag('--seed <n>', ['train', 'seed'], (d) => `seed for the split, shuffling, LoRA init and dropout (default ${d})`),
  numberFlag('--eval-every <n>', ['train', 'evalEvery'], (d) => `validation every N steps (default ${d}, 0 = at the end only)`),
  numberFlag('--save-every <n>', ['train', 'saveEvery'], (d) => `checkpoint every N steps (default ${d}, 0 = off)`),
  numberFlag('--save-every-minutes <m>', ['train', 'saveEveryMinutes'], (d) => `checkpoint every M minutes (default ${d}, 0 = off)`),
  numberFlag('--keep-last <k>', ['train', 'keepLast'], (d) => `checkpoints kept besides the best (default ${d})`),
];

/** --runtime of mlw finetune and mlw pretrain: the choices and the default are the configuration schema's. */
export function trainRuntimeOption(): Option {
  const runtime = FinetuneConfig.shape.runtime;
  return new Option(
    '--runtime <name>',
    `what computes the training steps; auto: ONNX Runtime when onnxruntime-node loads, else TensorFlow.js (default ${runtime.parse(undefined)})`,
  ).choices(runtime.unwrap().options);
}

function valueAt(obj: unknown, p: string[]): unknown {
  return p.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function setAt(obj: Record<string, unknown>, p: string[], value: unknown): void {
  const parent = p.slice(0, -1).reduce((o, k) => (o[k] ??= {}) as Record<string, unknown>, obj);
  parent[p[p.length - 1]] = value;
}

function targets(s: string): LinearKey[] {
  const list = s
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const bad = list.find((t) => !(LINEAR_KEYS as readonly string[]).includes(t));
  if (bad || !list.length) throw new UsageError(`--lora-targets: "${bad ?? s}" is not one of ${LINEAR_KEYS.join(', ')}`);
  return list as LinearKey[];
}

/** A setting the schema refuses, said as the flag that set it. */
function flagError(issue: z.core.$ZodIssue, o: Opts): UsageError {
  const f = NUMBER_FLAGS.find((x) => x.path.join('.') === issue.path.join('.'));
  if (!f) return new UsageError(`finetune: ${issue.path.join('.')}: ${issue.message}`);
  const name = f.option.long!;
  const raw = o[f.option.attributeName()];
  if (issue.code === 'too_small') return new UsageError(`${name}: ${raw} is ${issue.inclusive ? 'below the minimum' : 'not above'} ${issue.minimum}`);
  if (issue.code === 'too_big') return new UsageError(`${name}: ${raw} is ${issue.inclusive ? 'above the maximum' : 'not below'} ${issue.maximum}`);
  if (issue.code === 'invalid_type' && issue.expected === 'int') return new UsageError(`${name}: "${raw}" is not an integer`);
  return new UsageError(`${name}: ${issue.message}`);
}

/** The run configuration from the flags: unset flags keep the schema's defaults, set ones are held to its bounds. */
export function configFrom(model: string, o: Opts): FinetuneConfig {
  if (o.epochs !== undefined && o.maxSteps !== undefined) throw new UsageError('finetune: give --epochs or --max-steps, not both');
  // commander checked the choices of --method, --schedule, --loss-on, --grad-mode and --runtime
  const input: Record<string, unknown> = {
    model,
    data: o.data,
    val: o.val ?? null,
    method: o.method,
    lossOn: o.lossOn,
    packing: o.packing === true,
    gradMode: o.gradMode,
    runtime: o.runtime,
  };
  if (o.schedule !== undefined) setAt(input, ['train', 'decay'], o.schedule);
  if (o.loraTargets !== undefined) setAt(input, ['lora', 'targets'], targets(o.loraTargets as string));
  for (const f of NUMBER_FLAGS) {
    const raw = o[f.option.attributeName()];
    if (raw !== undefined) setAt(input, f.path, parseNumber(raw as string, f.option.long!));
  }
  const parsed = FinetuneConfig.safeParse(input);
  if (!parsed.success) throw flagError(parsed.error.issues[0], o);
  return parsed.data;
}

/** The flags of a fine-tuning configuration (mlw finetune, mlw job export): the schema's settings, each with its default. */
export function addFinetuneOptions(cmd: Command): Command {
  cmd
    .option('--data <file>', 'training data: .jsonl (chat, alpaca, prompt/completion or text rows) or .txt')
    .option('--val <file>', 'validation data (default: --val-fraction of --data)');
  for (const f of NUMBER_FLAGS) cmd.addOption(f.option);
  return cmd
    .addOption(new Option('--method <method>', `what is trained (default ${DEFAULTS.method})`).choices(FinetuneConfig.shape.method.unwrap().options))
    .addOption(new Option('--schedule <decay>', `decay after warmup (default ${DEFAULTS.train.decay})`).choices(DECAYS))
    .option('--lora-targets <list>', `LoRA target layers among ${LINEAR_KEYS.join(',')} (default ${DEFAULTS.lora.targets.join(',')})`)
    .addOption(new Option('--loss-on <what>', `tokens the loss covers (default ${DEFAULTS.lossOn})`).choices(FinetuneConfig.shape.lossOn.unwrap().options))
    .option('--packing', 'pack several examples into each sequence')
    .addOption(
      new Option('--grad-mode <mode>', 'tape (fast) or recompute (less memory); default: chosen by the memory estimate').choices(
        FinetuneConfig.shape.gradMode.unwrap().options,
      ),
    )
    .addOption(trainRuntimeOption());
}

export function registerTrainCommands(program: Command): void {
  const finetune = program
    .command('finetune')
    .description('fine-tune a model (LoRA or full) on a JSONL/TXT dataset; Ctrl-C pauses with a checkpoint')
    .argument('[model]', 'base model folder (not needed with --resume)');
  addFinetuneOptions(finetune)
    .option('--resume <runId>', 'continue a paused or interrupted run')
    .option('--check', 'validate the data and estimate memory and time, then stop')
    .option('--json', 'print the outcome as JSON (no progress bar)')
    .action(async (model: string | undefined, o: Opts, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      if (o.resume === undefined && (model === undefined || o.data === undefined))
        throw new UsageError('finetune: give <model> and --data (or --resume <runId>)');
      const resumeId = o.resume === undefined ? undefined : parseNumber(o.resume as string, '--resume', { integer: true, min: 1 });
      const extra = Object.keys(o).filter((k) => o[k] !== undefined && k !== 'resume' && k !== 'json');
      if (resumeId !== undefined && (model !== undefined || extra.length)) {
        throw new UsageError(
          `finetune: --resume continues a run with its own settings; drop ${model !== undefined ? '<model>' : `--${extra[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`}`,
        );
      }
      const input = resumeId === undefined ? configFrom(model!, o) : undefined;
      const backend = await initBackend(g.backend);
      if (o.check) {
        if (!input) throw new UsageError('finetune: --check needs <model> and --data, not --resume');
        return check(input, o.json === true);
      }
      const store = openStore({ home: g.home });
      const job = cliJob('finetune', { quiet: o.json === true });
      try {
        const outcome = resumeId === undefined ? await startFinetune(store, input!, job.ctx) : await resumeFinetune(store, resumeId, job.ctx);
        job.finish();
        if (o.json) return printJson(outcome);
        const where = outcome.checkpoint ? `; checkpoint ${outcome.checkpoint}` : '';
        const next = outcome.status === 'paused' ? ` — continue with: mlw finetune --resume ${outcome.runId}` : '';
        const result = outcome.modelId !== null ? `; recorded as model ${outcome.modelId}` : '';
        const runtime = trainedRuntime(store.runs.get(outcome.runId));
        process.stderr.write(
          `run ${outcome.runId} ${outcome.status} at step ${outcome.step} on ${runtime}${where}${result}${next} (${describeBackend(backend)})\n`,
        );
      } finally {
        job.finish();
        store.close();
      }
    });

  program
    .command('merge')
    .description('fold a PEFT LoRA adapter into its base model, giving a plain model folder')
    .argument('<adapterDir>', 'folder with adapter_config.json and adapter_model.safetensors')
    .requiredOption('--out <dir>', 'folder to write the merged model to')
    .option('--base <dir>', "base model folder (default: the adapter's base_model_name_or_path)")
    .action(async (adapterDir: string, o: { out: string; base?: string }, cmd: Command) => {
      await initBackend((cmd.optsWithGlobals() as { backend?: BackendName }).backend);
      await mergeLoraFolder(adapterDir, o.out, o.base);
      process.stderr.write(`merged ${adapterDir} into ${path.resolve(o.out)}\n`);
    });
}

/** --check: data problems (all of them, with line numbers), the data summary, and the estimate. */
function check(cfg: FinetuneConfig, json: boolean): void {
  const problems = [cfg.data, ...(cfg.val ? [cfg.val] : [])].flatMap((f) => formatIssues(parseDataset(f), 50));
  if (problems.length) {
    if (json) printJson({ ok: false, problems });
    else process.stderr.write(problems.join('\n') + '\n');
    throw new Error(`${problems.length} problem${problems.length > 1 ? 's' : ''} in the data`);
  }
  const data = prepareData(cfg);
  const estimate = estimateRun(cfg, data);
  if (json) return printJson({ ok: true, summary: data.summary, estimate });
  const s = data.summary.train;
  process.stdout.write(
    [
      `data         ${s.rows} rows, ${s.tokens} tokens (${s.learnedTokens} learned), longest ${s.longest?.tokens} tokens (line ${s.longest?.line})`,
      `cut          ${s.truncated} rows longer than ${cfg.maxSeqLen} tokens; ${s.skipped} left with nothing to learn`,
      `validation   ${data.val.length} examples`,
      `memory       ~${formatGigabytes(estimate.memory.total)} of ${formatGigabytes(estimate.limit)} (${estimate.limitReason}), ${estimate.memory.mode} backprop`,
      `step         ~${estimate.stepSeconds.toFixed(1)} s, ${estimate.memory.trainableParams} trainable parameters`,
    ].join('\n') + '\n',
  );
}
