// mlw pretrain: a MobileLLM from scratch on plain text (how the bundled
// default model was made). Progress bar; Ctrl-C pauses with a checkpoint;
// --resume continues a paused or killed run.
import type { Command } from 'commander';
import { Option } from 'commander';
import { describeBackend, initBackend, type BackendName } from '../../backend/select';
import { openStore } from '../../store/open';
import { pretrain, type PretrainInput } from '../../train/pretrain';
import { trainedRuntime } from '../../protocol/protocol';
import { HIDDEN_ACTS, type HiddenAct } from '../../model/config';
import { SHARING_STRATEGIES } from '../../model/sharing';
import { cliJob } from '../progress';
import { trainRuntimeOption } from './train';
import { UsageError } from '../errors';
import { parseNumber, printJson } from '../format';

type Opts = Record<string, string | boolean | undefined>;

/** The flags of a pre-training configuration (mlw pretrain, mlw job export-pretrain), each with its default. */
export function addPretrainOptions(cmd: Command): Command {
  return cmd
    .option('--corpus <names>', 'comma-separated: moby-dick, sotu, or text files', 'moby-dick,sotu')
    .option('--out <dir>', 'folder for the finished model')
    .option('--vocab-size <n>', 'tokenizer vocabulary', '8000')
    .option('--hidden <n>', 'hidden size', '256')
    .option('--intermediate <n>', 'gated MLP size', '704')
    .addOption(
      new Option('--hidden-act <act>', "the gated MLP's activation: silu (SwiGLU), relu (ReGLU), gelu, gelu_pytorch_tanh (GeGLU)")
        .choices(HIDDEN_ACTS)
        .default('silu'),
    )
    .option('--blocks <n>', 'decoder blocks', '12')
    .option('--heads <n>', 'attention heads', '4')
    .option('--kv-heads <n>', 'key/value heads', '2')
    .addOption(new Option('--layer-sharing <strategy>', 'block-wise layer sharing').choices(SHARING_STRATEGIES).default('none'))
    .option('--repeats <n>', 'layer-sharing repeats', '2')
    .option('--seq-len <n>', 'sequence length', '256')
    .option('--batch-size <n>', 'sequences per micro-batch', '8')
    .option('--grad-accum <n>', 'micro-batches per step', '1')
    .option('--max-steps <n>', 'optimizer steps', '1000')
    .option('--lr <x>', 'peak learning rate', '3e-3')
    .option('--warmup <n>', 'warm-up steps', '50')
    .option('--seed <n>', 'seed', '0')
    .option('--eval-every <n>', 'validation every N steps', '100')
    .option('--save-every <n>', 'checkpoint every N steps', '100')
    .addOption(trainRuntimeOption());
}

/** The pre-training configuration from the flags (--out required). */
export function pretrainInputFrom(o: Opts): PretrainInput {
  const n = (flag: string, key: string, min = 1) => parseNumber(o[key] as string, flag, { integer: true, min });
  if (!o.out) throw new UsageError('pretrain: --out DIR is required (or --resume RUN)');
  const input: PretrainInput = {
    corpus: String(o.corpus)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    out: o.out as string,
    vocabSize: n('--vocab-size', 'vocabSize', 300),
    hiddenSize: n('--hidden', 'hidden'),
    intermediateSize: n('--intermediate', 'intermediate'),
    hiddenAct: o.hiddenAct as HiddenAct,
    numBlocks: n('--blocks', 'blocks'),
    numHeads: n('--heads', 'heads'),
    numKvHeads: n('--kv-heads', 'kvHeads'),
    sharing: o.layerSharing === 'none' ? { strategy: 'none', repeats: 1 } : { strategy: o.layerSharing as never, repeats: n('--repeats', 'repeats', 2) },
    seqLen: n('--seq-len', 'seqLen', 16),
    train: {
      maxSteps: n('--max-steps', 'maxSteps'),
      lr: parseNumber(o.lr as string, '--lr', { min: 0 }),
      warmupSteps: n('--warmup', 'warmup', 0),
      batchSize: n('--batch-size', 'batchSize'),
      gradAccum: n('--grad-accum', 'gradAccum'),
      seed: n('--seed', 'seed', 0),
      evalEvery: n('--eval-every', 'evalEvery', 0),
      saveEvery: n('--save-every', 'saveEvery', 0),
    },
    runtime: o.runtime as PretrainInput['runtime'],
    commandLine: `mlw ${process.argv.slice(2).join(' ')}`,
  };
  const [hidden, heads] = [n('--hidden', 'hidden'), n('--heads', 'heads')];
  if (hidden % heads !== 0) throw new UsageError(`--hidden ${hidden} is not divisible by --heads ${heads}`);
  return input;
}

export function registerPretrainCommands(program: Command): void {
  addPretrainOptions(program.command('pretrain').description('pre-train a small MobileLLM from scratch on public-domain text (with its own BPE tokenizer)'))
    .option('--resume <runId>', 'continue a paused or interrupted pre-training run')
    .option('--json', 'print the outcome as JSON')
    .action(async (o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      const n = (flag: string, key: string, min = 1) => parseNumber(o[key] as string, flag, { integer: true, min });
      let input: PretrainInput | { resumeRunId: number };
      if (o.resume !== undefined) {
        if (o.runtime !== undefined) throw new UsageError('pretrain: --resume continues a run with its own settings; drop --runtime');
        input = { resumeRunId: n('--resume', 'resume') };
      } else {
        input = pretrainInputFrom(o);
      }
      const backend = await initBackend(g.backend);
      const store = openStore({ home: g.home });
      const job = cliJob('pretrain', { quiet: !!o.json });
      try {
        const r = await pretrain(store, input, job.ctx);
        job.finish();
        if (o.json) return printJson(r);
        console.log(
          `run ${r.runId} ${r.status} at step ${r.step} on ${trainedRuntime(store.runs.get(r.runId))}${r.out ? ` → ${r.out}` : ''}${r.valLoss !== null ? ` (validation loss ${r.valLoss.toFixed(3)})` : ''} — ${describeBackend(backend)}`,
        );
        if (r.status === 'paused') console.log(`resume with: mlw pretrain --resume ${r.runId}`);
      } finally {
        job.finish();
        store.close();
      }
    });
}
