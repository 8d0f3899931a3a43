// mlw lab: the paper lab. `lab list` shows the experiments (resources/lab);
// `lab run` trains every variant (resuming the unfinished, skipping the
// finished), evaluates them and prints the result table beside the paper's claim.
import { Option, type Command } from 'commander';
import { initBackend, type BackendName } from '../../backend/select';
import { findExperiment, listExperiments, SCALES, type Scale } from '../../lab/experiment';
import { runExperiment } from '../../lab/run';
import { labResultToMarkdown } from '../../lab/report';
import { TRAIN_RUNTIME_CHOICES } from '../../train/config';
import type { PretrainInput } from '../../train/pretrain';
import { openStore } from '../../store/open';
import { UsageError } from '../errors';
import { parseNumber, printJson } from '../format';
import { cliJob } from '../progress';
import { exportLab } from '../../lab/export';
import { importLab } from '../../lab/import';
import { JOB_INITS, type JobInit } from '../../job/spec';

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description("the paper lab: rerun the MobileLLM paper's design experiments at a scale this machine affords");
  lab
    .command('list')
    .description('the experiments (resources/lab) with their question and variants')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const all = listExperiments().map(({ file, experiment: e }) => ({
        name: e.name,
        question: e.question,
        variants: Object.fromEntries(SCALES.map((s) => [s, e.scales[s].variants.length])),
        file,
      }));
      if (o.json) return printJson(all);
      for (const x of all) console.log(`${x.name.padEnd(20)} ${x.variants.tiny} variants  ${x.question}`);
    });
  lab
    .command('run')
    .description('train every variant (resuming unfinished ones, skipping finished ones), evaluate them, print the table beside the paper')
    .argument('<experiment>', 'a bundled experiment name (mlw lab list) or a .json file')
    .addOption(new Option('--scale <scale>', 'tiny: this laptop; small: a GPU job').choices(SCALES).default('tiny'))
    .addOption(new Option('--runtime <name>', 'training runtime of new runs (default: onnx when it loads, else tfjs)').choices(TRAIN_RUNTIME_CHOICES))
    .option('--eval-text <file>', 'held-out text (default: resources/eval/held-out.txt)')
    .option('--json', 'print the result as JSON')
    .action(async (ref: string, o: { scale: Scale; runtime?: PretrainInput['runtime']; evalText?: string; json?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      let found;
      try {
        found = findExperiment(ref);
      } catch (e) {
        throw new UsageError(`lab run: ${(e as Error).message}`);
      }
      await initBackend(g.backend);
      const store = openStore({ home: g.home });
      const job = cliJob('lab', { quiet: !!o.json });
      try {
        const r = await runExperiment(store, found.experiment, { scale: o.scale, runtime: o.runtime, evalText: o.evalText }, job.ctx);
        job.finish();
        if (o.json) return printJson(r);
        process.stdout.write(labResultToMarkdown(r));
        if (!r.complete) process.stderr.write(`resume with: mlw lab run ${ref} --scale ${o.scale}\n`);
      } finally {
        job.finish();
        store.close();
      }
    });
  lab
    .command('export')
    .description('write a lab folder of GPU jobs, one job folder (as mlw job export-pretrain writes it) per variant × seed, sharing the tokenized corpus')
    .argument('<experiment>', 'a bundled experiment name (mlw lab list) or a .json file')
    .addOption(new Option('--scale <scale>', 'tiny: this laptop; small: a GPU job').choices(SCALES).default('small'))
    .requiredOption('--out <dir>', 'the lab folder to write (new or empty)')
    .option('--seeds <list>', "comma-separated seeds (default: the experiment's at this scale)")
    .addOption(
      new Option('--init <where>', "initial weights: in each job's model/ (what mlw lab run trains) or drawn by train.py from the seed")
        .choices(JOB_INITS)
        .default('folder'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (ref: string, o: { scale: Scale; out: string; seeds?: string; init: JobInit; json?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      let found;
      try {
        found = findExperiment(ref);
      } catch (e) {
        throw new UsageError(`lab export: ${(e as Error).message}`);
      }
      const seeds = o.seeds === undefined ? undefined : [...new Set(o.seeds.split(',').map((x) => parseNumber(x, '--seeds', { integer: true, min: 0 })))];
      await initBackend(g.backend);
      const r = await exportLab(found.experiment, o.out, { scale: o.scale, seeds, home: g.home, init: o.init });
      if (o.json) return printJson(r);
      process.stderr.write(
        `wrote ${r.dir}: ${r.jobs.length} jobs (${r.jobs.map((j) => j.dir).join(', ')})\n` + `run them as its README.md says, then: mlw lab import ${r.dir}\n`,
      );
    });
  lab
    .command('import')
    .description(
      "record a lab folder's finished jobs as the variants' runs (mlw job import), evaluate them and print the table as lab run does — training nothing",
    )
    .argument('<dir>', 'the lab folder (mlw lab export), after its jobs ran')
    .option('--eval-text <file>', 'held-out text (default: resources/eval/held-out.txt)')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, o: { evalText?: string; json?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      await initBackend(g.backend);
      const store = openStore({ home: g.home });
      const job = cliJob('lab', { quiet: !!o.json });
      try {
        const r = await importLab(store, dir, { evalText: o.evalText }, job.ctx);
        job.finish();
        if (o.json) return printJson(r);
        for (const j of r.jobs) {
          const what =
            j.status === 'imported' ? `run ${j.runId}` : j.status === 'not finished' ? `not finished (step ${j.step} of ${j.totalSteps})` : 'not started';
          process.stderr.write(`${j.dir}: ${what}\n`);
        }
        process.stdout.write(labResultToMarkdown(r.result));
        const left = r.jobs.filter((j) => j.status !== 'imported');
        if (left.length) process.stderr.write(`${left.length} of ${r.jobs.length} jobs not finished: run them, then import again: mlw lab import ${r.dir}\n`);
      } finally {
        job.finish();
        store.close();
      }
    });
}
