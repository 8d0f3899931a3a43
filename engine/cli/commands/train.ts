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
import { FinetuneConfig, type FinetuneInput } from '../../train/config';
import { formatIssues, parseDataset } from '../../train/datasets';
import { cliJob } from '../progress';
import { UsageError } from '../errors';
import { parseNumber, printJson } from '../format';

type Opts = Record<string, string | boolean | undefined>;

function targets(s: string): LinearKey[] {
  const list = s.split(',').map((t) => t.trim()).filter(Boolean);
  const bad = list.find((t) => !(LINEAR_KEYS as readonly string[]).includes(t));
  if (bad || !list.length) throw new UsageError(`--lora-targets: "${bad ?? s}" is not one of ${LINEAR_KEYS.join(', ')}`);
  return list as LinearKey[];
}

/** The run configuration from the flags (unset flags keep FinetuneConfig's defaults). */
function configFrom(model: string, o: Opts): FinetuneInput {
  const num = (flag: string, key: string, opts: { integer?: boolean; min?: number; max?: number } = {}) =>
    o[key] === undefined ? undefined : parseNumber(o[key] as string, flag, opts);
  if (o.epochs !== undefined && o.maxSteps !== undefined) throw new UsageError('finetune: give --epochs or --max-steps, not both');
  return {
    model,
    data: o.data as string,
    val: (o.val as string | undefined) ?? null,
    valFraction: num('--val-fraction', 'valFraction', { min: 0, max: 0.5 }),
    method: o.method as FinetuneConfig['method'] | undefined,
    lora: {
      rank: num('--lora-rank', 'loraRank', { integer: true, min: 1 }),
      alpha: num('--lora-alpha', 'loraAlpha', { min: 0 }),
      dropout: num('--lora-dropout', 'loraDropout', { min: 0, max: 1 }),
      targets: o.loraTargets === undefined ? undefined : targets(o.loraTargets as string),
    },
    maxSeqLen: num('--max-seq-len', 'maxSeqLen', { integer: true, min: 2 }),
    lossOn: o.lossOn as FinetuneConfig['lossOn'] | undefined,
    packing: o.packing === true,
    gradMode: o.gradMode as FinetuneConfig['gradMode'] | undefined, // commander checked the choices
    train: {
      epochs: num('--epochs', 'epochs', { integer: true, min: 1 }),
      maxSteps: num('--max-steps', 'maxSteps', { integer: true, min: 1 }),
      lr: num('--lr', 'lr', { min: 0 }),
      warmupSteps: num('--warmup-steps', 'warmupSteps', { integer: true, min: 0 }),
      decay: o.schedule as FinetuneConfig['train']['decay'] | undefined,
      batchSize: num('--batch-size', 'batchSize', { integer: true, min: 1 }),
      gradAccum: num('--grad-accum', 'gradAccum', { integer: true, min: 1 }),
      adamw: { weightDecay: num('--weight-decay', 'weightDecay', { min: 0 }) },
      maxGradNorm: num('--max-grad-norm', 'maxGradNorm', { min: 0 }),
      seed: num('--seed', 'seed', { integer: true }),
      evalEvery: num('--eval-every', 'evalEvery', { integer: true, min: 0 }),
      saveEvery: num('--save-every', 'saveEvery', { integer: true, min: 0 }),
      saveEveryMinutes: num('--save-every-minutes', 'saveEveryMinutes', { min: 0 }),
      keepLast: num('--keep-last', 'keepLast', { integer: true, min: 1 }),
    },
  };
}

export function registerTrainCommands(program: Command): void {
  program
    .command('finetune')
    .description('fine-tune a model (LoRA or full) on a JSONL/TXT dataset; Ctrl-C pauses with a checkpoint')
    .argument('[model]', 'base model folder (not needed with --resume)')
    .option('--data <file>', 'training data: .jsonl (chat, alpaca, prompt/completion or text rows) or .txt')
    .option('--val <file>', 'validation data (default: --val-fraction of --data)')
    .option('--val-fraction <f>', 'share of --data held out for validation (default 0.1)')
    .addOption(new Option('--method <method>', 'what is trained').choices(['lora', 'full']))
    .option('--epochs <n>', 'passes over the data (default 1)')
    .option('--max-steps <n>', 'optimizer steps (instead of --epochs)')
    .option('--lr <rate>', 'peak learning rate (default 2e-4)')
    .option('--warmup-steps <n>', 'linear warmup steps (default 0)')
    .addOption(new Option('--schedule <decay>', 'decay after warmup (default cosine)').choices(DECAYS))
    .option('--batch-size <n>', 'sequences per micro-batch (default 4)')
    .option('--grad-accum <n>', 'micro-batches per optimizer step (default 1)')
    .option('--max-seq-len <n>', 'tokens per sequence; longer rows are cut (default 512)')
    .option('--weight-decay <w>', 'AdamW decoupled weight decay (default 0.01; not on norms)')
    .option('--max-grad-norm <n>', 'clip the global gradient norm (default 1, 0 = off)')
    .option('--lora-rank <r>', 'LoRA rank (default 8)')
    .option('--lora-alpha <a>', 'LoRA alpha (default 16)')
    .option('--lora-dropout <p>', 'LoRA dropout (default 0)')
    .option('--lora-targets <list>', `LoRA target layers among ${LINEAR_KEYS.join(',')} (default q,v)`)
    .addOption(new Option('--loss-on <what>', 'tokens the loss covers (default answers)').choices(['answers', 'all']))
    .option('--packing', 'pack several examples into each sequence')
    .option('--seed <n>', 'seed for the split, shuffling, LoRA init and dropout (default 0)')
    .option('--eval-every <n>', 'validation every N steps (default 50, 0 = at the end only)')
    .option('--save-every <n>', 'checkpoint every N steps (default 100, 0 = off)')
    .option('--save-every-minutes <m>', 'checkpoint every M minutes (default 10, 0 = off)')
    .option('--keep-last <k>', 'checkpoints kept besides the best (default 2)')
    .addOption(new Option('--grad-mode <mode>', 'tape (fast) or recompute (less memory); default: chosen by the memory estimate').choices(['auto', 'tape', 'recompute']))
    .option('--resume <runId>', 'continue a paused or interrupted run')
    .option('--check', 'validate the data and estimate memory and time, then stop')
    .option('--json', 'print the outcome as JSON (no progress bar)')
    .action(async (model: string | undefined, o: Opts, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      if (o.resume === undefined && (model === undefined || o.data === undefined)) throw new UsageError('finetune: give <model> and --data (or --resume <runId>)');
      const resumeId = o.resume === undefined ? undefined : parseNumber(o.resume as string, '--resume', { integer: true, min: 1 });
      const extra = Object.keys(o).filter((k) => o[k] !== undefined && k !== 'resume' && k !== 'json');
      if (resumeId !== undefined && (model !== undefined || extra.length)) {
        throw new UsageError(`finetune: --resume continues a run with its own settings; drop ${model !== undefined ? '<model>' : `--${extra[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`}`);
      }
      const input = resumeId === undefined ? configFrom(model!, o) : undefined;
      const backend = await initBackend(g.backend);
      if (o.check) {
        if (!input) throw new UsageError('finetune: --check needs <model> and --data, not --resume');
        return check(FinetuneConfig.parse(input), o.json === true);
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
        process.stderr.write(`run ${outcome.runId} ${outcome.status} at step ${outcome.step}${where}${result}${next} (${describeBackend(backend)})\n`);
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
  const gb = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GB`;
  process.stdout.write(
    [
      `data         ${s.rows} rows, ${s.tokens} tokens (${s.learnedTokens} learned), longest ${s.longest?.tokens} tokens (line ${s.longest?.line})`,
      `cut          ${s.truncated} rows longer than ${cfg.maxSeqLen} tokens; ${s.skipped} left with nothing to learn`,
      `validation   ${data.val.length} examples`,
      `memory       ~${gb(estimate.memory.total)} of ${gb(estimate.limit)} (${estimate.limitReason}), ${estimate.memory.mode} backprop`,
      `step         ~${estimate.stepSeconds.toFixed(1)} s, ${estimate.memory.trainableParams} trainable parameters`,
    ].join('\n') + '\n',
  );
}
