// mlw eval: perplexity of a text, or zero-shot multiple choice on a tasks
// file, recorded as an evaluation report; mlw eval-convert: benchmark
// exports (ARC, PIQA, HellaSwag, WinoGrande, BoolQ) → a tasks file.
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { initBackend, type BackendName } from '../../backend/select';
import { CONVERT_FORMATS, convertJsonl, type ConvertFormat } from '../../eval/convert';
import { evaluateModel } from '../../eval/job';
import { recordEvaluation, resolveEvalTarget } from '../../eval/record';
import { evalTargetContext } from '../../server/trained-context';
import { reportToText } from '../../eval/report';
import { writeFileAtomic } from '../../io/atomic';
import { RUNTIME_NAMES, type RuntimeName } from '../../runtime/runtime';
import { openStore } from '../../store/open';
import { UsageError } from '../errors';
import { parseNumber, printJson } from '../format';
import { cliJob } from '../progress';

interface EvalOpts {
  text?: string;
  tasks?: string;
  task?: string;
  window?: string;
  stride?: string;
  limit?: string;
  bos?: boolean;
  runtime?: RuntimeName;
  json?: boolean;
}

function checkFile(file: string, flag: string): string {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new UsageError(`${flag}: ${file} not found`);
  return file;
}

const int = (s: string | undefined, flag: string, min: number): number | undefined =>
  s === undefined ? undefined : parseNumber(s, flag, { integer: true, min });

export function registerEvalCommands(program: Command): void {
  program
    .command('eval')
    .description('evaluate a model: perplexity of a text, or zero-shot multiple choice (lm-evaluation-harness scoring); recorded as a report')
    .argument('<model>', 'model folder, or the id or name of a model in the store')
    .option('--text <file>', 'perplexity of this text, in sliding windows')
    .option(
      '--tasks <file>',
      'multiple-choice tasks, JSONL (see engine/eval/tasks.ts; mlw eval-convert makes one; resources/eval/held-out-choice.jsonl is bundled)',
    )
    .addOption(new Option('--task <file>', 'the same as --tasks').hideHelp())
    .option('--window <n>', '--text: tokens per window (default: the length the model was trained on where known, else its context)')
    .option('--stride <n>', '--text: new tokens scored per window (default: window − 1)')
    .option('--limit <n>', '--tasks: only the first n items of each task')
    .option('--bos', '--tasks: put BOS before each context (the harness does not, by default)')
    .addOption(new Option('--runtime <name>', 'inference runtime (default: MLW_RUNTIME, else onnx when it loads, else tfjs)').choices(RUNTIME_NAMES))
    .option('--json', 'print the report as JSON')
    .action(async (ref: string, opts: EvalOpts, cmd: Command) => {
      if (opts.task !== undefined && opts.tasks !== undefined) throw new UsageError('eval: give --tasks once');
      const o = { ...opts, tasks: opts.tasks ?? opts.task };
      if ((o.text === undefined) === (o.tasks === undefined)) throw new UsageError('eval: give exactly one of --text or --tasks');
      if (o.tasks !== undefined && (o.window !== undefined || o.stride !== undefined)) throw new UsageError('--window and --stride apply to --text only');
      if (o.text !== undefined && (o.limit !== undefined || o.bos)) throw new UsageError('--limit and --bos apply to --tasks only');
      const params = {
        text: o.text === undefined ? undefined : checkFile(o.text, '--text'),
        tasks: o.tasks === undefined ? undefined : checkFile(o.tasks, '--tasks'),
        window: int(o.window, '--window', 2),
        stride: int(o.stride, '--stride', 1),
        limit: int(o.limit, '--limit', 1),
        bos: o.bos,
        runtime: o.runtime,
      };
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      const store = openStore({ home: g.home });
      try {
        let target;
        try {
          target = resolveEvalTarget(store, ref);
        } catch (e) {
          throw new UsageError(`eval: ${(e as Error).message}`);
        }
        await initBackend(g.backend);
        const job = cliJob('eval', { quiet: o.json });
        let report;
        try {
          // A model scored past the length it was trained on reads positions it never learned: the window defaults to that length.
          const window = params.window ?? (params.text !== undefined ? (evalTargetContext(store, target) ?? undefined) : undefined);
          report = await evaluateModel({ ...params, window, modelDir: target.dir }, job.ctx);
        } finally {
          job.finish();
        }
        const stored = recordEvaluation(store, report, target);
        if (o.json) return printJson({ reportId: stored.id, modelId: stored.modelId, checkpointId: stored.checkpointId, runId: stored.runId, ...report });
        console.log(reportToText(report));
        const owner = stored.checkpointId !== null ? `checkpoint ${stored.checkpointId} of run ${stored.runId}` : `model ${stored.modelId}`;
        process.stderr.write(`recorded as report ${stored.id} of ${owner} in ${store.layout.root}\n`);
      } finally {
        store.close();
      }
    });

  program
    .command('eval-convert')
    .description('convert a benchmark export (Hugging Face datasets rows, JSONL) to an mlw eval --tasks file')
    .addOption(new Option('--format <name>', 'the benchmark the rows come from').choices(CONVERT_FORMATS).makeOptionMandatory())
    .option('--task <name>', 'task name in the output (default: the format, e.g. arc; use arc_easy / arc_challenge for ARC)')
    .argument('<in>', 'JSONL export of the dataset split')
    .argument('<out>', 'tasks file to write')
    .option('--json', 'print JSON')
    .action((input: string, out: string, o: { format: ConvertFormat; task?: string; json?: boolean }) => {
      const rows = convertJsonl(o.format, fs.readFileSync(checkFile(input, '<in>'), 'utf8'), o.task ?? o.format, input);
      writeFileAtomic(out, rows.map((r) => JSON.stringify(r) + '\n').join(''));
      if (o.json) return printJson({ format: o.format, task: o.task ?? o.format, items: rows.length, out });
      console.log(`${rows.length} items (${o.task ?? o.format}) → ${out}`);
    });
}
