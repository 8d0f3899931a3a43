// mlw job export (export-pretrain): a fine-tuning (pre-training) configuration,
// the flags of mlw finetune (mlw pretrain), as a job folder that PyTorch runs anywhere (torchrun, Slurm, SkyPilot).
// mlw job import: its results back as a run in the store (again: extended).
import { Option, type Command } from 'commander';
import { initBackend, type BackendName } from '../../backend/select';
import { openStore } from '../../store/open';
import { exportJob, exportPretrainJob } from '../../job/export';
import { JOB_INITS, type JobExportResult, type JobInit } from '../../job/spec';
import { importJob } from '../../job/import';
import { UsageError } from '../errors';
import { printJson } from '../format';
import { addFinetuneOptions, configFrom } from './train';
import { addPretrainOptions, pretrainInputFrom } from './pretrain';

type Opts = Record<string, string | boolean | undefined>;

function report(r: JobExportResult, json: boolean): void {
  if (json) return printJson(r);
  process.stderr.write(
    `wrote ${r.dir}: ${r.totalSteps} steps, ${r.trainExamples} training and ${r.valExamples} validation examples\n` +
      `run it with: ${r.command}   (README.md there: Slurm, SkyPilot; then: mlw job import ${r.dir})\n`,
  );
}

export function registerJobCommands(program: Command): void {
  const job = program.command('job').description('run a fine-tuning on a GPU machine with PyTorch: export a job folder, import its results');
  const exp = job
    .command('export')
    .description('write a job folder (model, tokenized data, hyper-parameters, train.py, launch recipes) for a fine-tuning configuration')
    .argument('<model>', 'base model folder');
  addFinetuneOptions(exp)
    .requiredOption('--out <dir>', 'the job folder to write (new or empty)')
    .option('--json', 'print the result as JSON')
    .action(async (model: string, o: Opts, cmd: Command) => {
      if (o.data === undefined) throw new UsageError('job export: give --data');
      const { out, json, ...flags } = o;
      const cfg = configFrom(model, flags);
      await initBackend((cmd.optsWithGlobals() as { backend?: BackendName }).backend);
      report(await exportJob(cfg, out as string), json === true);
    });

  addPretrainOptions(
    job.command('export-pretrain').description('write a job folder for a pre-training configuration (the flags of mlw pretrain; --out is the job folder)'),
  )
    .addOption(
      new Option(
        '--init <where>',
        'initial weights: written into the folder (exactly what mlw pretrain trains) or drawn by train.py from the seed (no weights to ship)',
      )
        .choices(JOB_INITS)
        .default('folder'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (o: Opts, cmd: Command) => {
      if (!o.out) throw new UsageError('job export-pretrain: give --out DIR (the job folder)');
      const { init, ...flags } = o;
      await initBackend((cmd.optsWithGlobals() as { backend?: BackendName }).backend);
      report(await exportPretrainJob(pretrainInputFrom(flags), o.out as string, init as JobInit), o.json === true);
    });

  job
    .command('import')
    .description("record a job folder's curves, checkpoints and machine as a run (again: adds what is new)")
    .argument('<dir>', 'the job folder')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, o: Opts, cmd: Command) => {
      const store = openStore({ home: (cmd.optsWithGlobals() as { home?: string }).home });
      try {
        const r = await importJob(store, dir);
        if (o.json) return printJson(r);
        const where = r.machine
          ? ` (ran on ${r.machine.hostname}: ${r.machine.gpus.length ? r.machine.gpus.join(', ') : 'CPU'}, ${r.machine.worldSize} process${r.machine.worldSize > 1 ? 'es' : ''})`
          : '';
        process.stderr.write(
          `${r.created ? 'recorded' : 'extended'} run ${r.runId}: ${r.status} at step ${r.lastStep}, ${r.newSteps} new steps, ${r.newCheckpoints.length} new checkpoints${where}\n`,
        );
      } finally {
        store.close();
      }
    });
}
