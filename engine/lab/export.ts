// mlw lab export: an experiment at a scale as GPU jobs, one job folder
// (engine/job, the same export as mlw job export-pretrain) per variant × seed,
// in one lab folder:
//
//   lab.json            LabManifest: the experiment (seeds as exported), the scale, variant × seed → job folder
//   README.md           one launch line per job (torchrun, Slurm) and the way back (mlw lab import)
//   data/seed<N>/       the tokenized corpus split by seed N and its batch plan, shared by every variant
//                       of seed N (their tokenizer, sequences and plan are the same): each job's data/ links here
//   <variant>-seed<N>/  a job folder (engine/job/spec.ts)
//
// Each job's configuration names as its `out` the folder `mlw lab run` gives
// that variant in the exporting home; `mlw lab import` (import.ts) records the
// finished jobs as those runs in the importing home, so the experiment's
// table is made of them.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { exportPretrainJobs } from '../job/export';
import type { JobInit } from '../job/spec';
import { resolveHome } from '../store/home';
import { writeFileAtomic } from '../io/atomic';
import { Experiment, planVariants, SCALES, variantPretrainInput, type Scale } from './experiment';
import { variantOut } from './run';

export const LAB_MANIFEST = 'lab.json';
const LAB_FORMAT = 1;

const int = z.number().int();

export const LabJob = z.object({
  variant: z.string(),
  seed: int.min(0),
  /** The job folder, relative to the lab folder. */
  dir: z.string(),
  /** The job's id (job.json). */
  id: z.string(),
  totalSteps: int.positive(),
});
export type LabJob = z.infer<typeof LabJob>;

export const LabManifest = z.object({
  format: z.literal(LAB_FORMAT),
  /** The experiment as exported (its seeds at this scale are the exported ones), so that importing needs no file. */
  experiment: Experiment,
  scale: z.enum(SCALES),
  createdAt: z.number(),
  jobs: z.array(LabJob).min(1),
});
export type LabManifest = z.infer<typeof LabManifest>;

export interface LabExportOptions {
  scale: Scale;
  /** Seeds to export (default: the experiment's seeds at this scale). */
  seeds?: number[];
  /** The home whose lab folder the jobs' `out` names (default: as the store resolves it). */
  home?: string;
  /** Initial weights in each job's model/ or drawn by train.py (engine/job/spec.ts). */
  init?: JobInit;
}

export interface LabExportResult {
  dir: string;
  experiment: string;
  scale: Scale;
  jobs: (LabJob & { command: string })[];
}

/** The experiment with the seeds of `scale` replaced. */
function withSeeds(e: Experiment, scale: Scale, seeds: number[]): Experiment {
  const plan = e.scales[scale];
  return { ...e, scales: { ...e.scales, [scale]: { ...plan, budget: { ...plan.budget, seeds } } } };
}

function readme(m: LabManifest, name: string): string {
  const e = m.experiment;
  const b = e.scales[m.scale].budget;
  const dirs = m.jobs.map((j) => j.dir);
  return `# Lab experiment ${e.name} (${m.scale}): ${m.jobs.length} jobs

${e.question}

Every variant × seed is one pre-training job folder (its own README.md says what is in it): ${b.steps} steps of ${b.batchSize * b.gradAccum} × ${b.seqLen} tokens on ${b.corpus.join(' + ')}, seeds ${b.seeds.join(', ')}.

| job | variant | seed | steps |
| --- | --- | --- | --- |
${m.jobs.map((j) => `| \`${j.dir}\` | ${j.variant} | ${j.seed} | ${j.totalSteps} |`).join('\n')}

## Run

Needs Python 3 and PyTorch. One after the other on one machine with N GPUs:

\`\`\`sh
cd ${name}
for j in ${dirs.join(' ')}; do (cd "$j" && torchrun --nproc_per_node=N train.py) || break; done
\`\`\`

or one job at a time:

\`\`\`sh
${dirs.map((d) => `(cd ${d} && torchrun --nproc_per_node=N train.py)`).join('\n')}
\`\`\`

Slurm, all at once (edit each job.sbatch's partition and GPU count first):

\`\`\`sh
for j in ${dirs.join(' ')}; do (cd "$j" && sbatch job.sbatch); done
\`\`\`

A job launched again continues from its newest checkpoint; a finished one writes \`done.json\`.

## Data

\`data/seed<N>/\` holds the tokenized corpus and batch plan of seed N once; each job's \`data/\` is a link to it. Move the lab folder as a whole (\`rsync -a\`, \`tar\`); to send one job folder alone, copy it with the link followed (\`rsync -aL\`, \`cp -rL\`).

## Back in the workbench

Copy the folder back (or mount it) and run \`mlw lab import ${name}\`: every finished job becomes its variant's run, and the result table is printed as \`mlw lab run ${e.name} --scale ${m.scale}\` prints it (\`mlw lab run\` then finds them too). Jobs not finished yet are named; import again once they are.
`;
}

/** Writes the lab folder `out` (new or empty) for experiment `e` at a scale. The backend must be initialized. */
export async function exportLab(e: Experiment, out: string, o: LabExportOptions): Promise<LabExportResult> {
  const dir = path.resolve(out);
  if (fs.existsSync(dir) && fs.readdirSync(dir).length) throw new Error(`${dir}: not empty (a lab folder is written into a new or empty folder)`);
  const seeds = o.seeds ?? e.scales[o.scale].budget.seeds;
  const exp = withSeeds(e, o.scale, seeds);
  const home = resolveHome(o.home);
  const plan = planVariants(exp, o.scale);
  const jobs = plan.flatMap((v) =>
    seeds.map((seed) => {
      const input = variantPretrainInput(exp, o.scale, v, seed, variantOut(home, exp, o.scale, v.name, seed), 'auto');
      return {
        variant: v.name,
        seed,
        input: { ...input, commandLine: `mlw lab export ${e.name} --scale ${o.scale} (variant ${v.name}, seed ${seed})` },
        out: path.join(dir, `${v.name}-seed${seed}`),
        data: path.join(dir, 'data', `seed${seed}`),
      };
    }),
  );
  fs.mkdirSync(dir, { recursive: true });
  const exported = await exportPretrainJobs(jobs, o.init ?? 'folder');
  const manifest: LabManifest = {
    format: LAB_FORMAT,
    experiment: exp,
    scale: o.scale,
    createdAt: Date.now(),
    jobs: jobs.map((j, i) => ({ variant: j.variant, seed: j.seed, dir: path.basename(j.out), id: exported[i].id, totalSteps: exported[i].totalSteps })),
  };
  writeFileAtomic(path.join(dir, LAB_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  writeFileAtomic(path.join(dir, 'README.md'), readme(manifest, path.basename(dir)));
  return { dir, experiment: e.name, scale: o.scale, jobs: manifest.jobs.map((j, i) => ({ ...j, command: exported[i].command })) };
}

/** The manifest of lab folder `dir`; a bad one throws one line naming the file and key. */
export function readLabManifest(dir: string): LabManifest {
  const file = path.join(dir, LAB_MANIFEST);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${LAB_MANIFEST} (not a lab folder made by mlw lab export)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
  const parsed = LabManifest.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: invalid "${parsed.error.issues[0].path.join('.') || '(root)'}": ${parsed.error.issues[0].message}`);
  return parsed.data;
}
