// The Lab page's requests: the experiments (bundled in resources/lab, and the
// user's own copies in <home>/lab/*.json), running one as a job in a child
// process (engine/lab/run.ts; its pre-training runs pause and resume like any
// other), its result as far as it is trained (read from the store and the
// evaluations kept beside the runs, nothing trained or measured), and the report.
import fs from 'node:fs';
import path from 'node:path';
import type { EngineService } from './service';
import type { LabExperimentSummary, LabView, ValidParams } from '../protocol/protocol';
import { LAB_DIR, planVariants, readExperiment, SCALES, type Experiment, type Scale } from '../lab/experiment';
import { runExperiment, type LabResult } from '../lab/run';
import { labTable, writeLabReport } from '../lab/report';
import { labPlots } from '../lab/plots';
import { runInChild } from './child-jobs';
import { KindedError, oneLine } from '../errors';
import { quietContext } from '../jobs/job';
import { countParams, effectiveDepth } from '../model/config';

/** The home's folder of the user's own experiment files (beside the runs' folders, <home>/lab/<experiment>/). */
const homeLabDir = (svc: EngineService) => path.join(svc.store.layout.root, 'lab');

function jsonFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => path.join(dir, f));
}

function summary(file: string, origin: LabExperimentSummary['origin']): LabExperimentSummary {
  let e: Experiment;
  try {
    e = readExperiment(file);
  } catch (err) {
    const name = path.basename(file, '.json');
    const none = { source: '', says: '' };
    return { name, file, origin, question: '', paper: none, holdEqual: 'none', quantize: [], scales: {}, problem: oneLine(err as Error) };
  }
  const scales: LabExperimentSummary['scales'] = {};
  let problem: string | null = null;
  for (const scale of SCALES) {
    try {
      const b = e.scales[scale].budget;
      const variants = planVariants(e, scale).map((v) => ({
        name: v.name,
        label: v.label,
        params: countParams(v.config).total,
        depth: effectiveDepth(v.config),
      }));
      scales[scale] = { steps: b.steps, tokensPerStep: b.batchSize * b.gradAccum * b.seqLen, seeds: b.seeds, variants };
    } catch (err) {
      problem ??= oneLine(err as Error);
    }
  }
  return {
    name: e.name,
    file,
    origin,
    question: e.question,
    paper: { source: e.paper.source, says: e.paper.says },
    holdEqual: e.holdEqual,
    quantize: e.quantize,
    scales,
    problem,
  };
}

export function labList(svc: EngineService): LabExperimentSummary[] {
  return [...jsonFiles(LAB_DIR).map((f) => summary(f, 'bundled')), ...jsonFiles(homeLabDir(svc)).map((f) => summary(f, 'home'))];
}

/** An experiment by file path, or by name: bundled, else <home>/lab/<name>.json. */
function resolve(svc: EngineService, ref: string): { file: string; experiment: Experiment } {
  const isFile = ref.endsWith('.json') || ref.includes(path.sep);
  const file = isFile ? path.resolve(ref) : [LAB_DIR, homeLabDir(svc)].map((d) => path.join(d, `${ref}.json`)).find((f) => fs.existsSync(f));
  if (!file || !fs.existsSync(file)) {
    const known = labList(svc).map((x) => x.name);
    throw new KindedError('not_found', isFile ? `${ref}: no such experiment file` : `no experiment "${ref}" (known: ${known.join(', ') || 'none'})`);
  }
  try {
    const experiment = readExperiment(file);
    if (!isFile && experiment.name !== ref) throw new Error(`${file}: its name is "${experiment.name}", not "${ref}"`);
    return { file, experiment };
  } catch (err) {
    throw new KindedError('bad_input', oneLine(err as Error));
  }
}

/** The job title of an experiment at a scale: one job runs one experiment at one scale at a time. */
const labTitle = (e: Experiment, scale: Scale) => `lab: ${e.name} (${scale})`;

function unfinishedJob(svc: EngineService, e: Experiment, scale: Scale): string | null {
  return svc.jobs.list().find((j) => j.kind === 'lab' && j.state === 'running' && j.title === labTitle(e, scale))?.id ?? null;
}

export function startLab(svc: EngineService, p: ValidParams<'lab.start'>): { jobId: string } {
  const { file, experiment: e } = resolve(svc, p.experiment);
  try {
    planVariants(e, p.scale);
  } catch (err) {
    throw new KindedError('bad_input', oneLine(err as Error));
  }
  const pending = unfinishedJob(svc, e, p.scale);
  if (pending) throw new KindedError('conflict', `${e.name} (${p.scale}) is already running or waiting to run`);
  const params = { file, scale: p.scale, runtime: p.runtime, evalText: p.evalText };
  const jobId = svc.jobs.start('lab', labTitle(e, p.scale), (ctx) => runInChild('lab', params, svc.childOptions(), ctx), 'train');
  return { jobId };
}

/** The result as far as it is trained and measured, with its table and plots. */
async function readResult(svc: EngineService, p: ValidParams<'lab.result'>): Promise<{ e: Experiment; result: LabResult; view: LabView }> {
  const { experiment: e } = resolve(svc, p.experiment);
  let result: LabResult;
  try {
    result = await runExperiment(svc.store, e, { scale: p.scale, evalText: p.evalText, readOnly: true }, quietContext());
  } catch (err) {
    throw new KindedError('bad_input', oneLine(err as Error));
  }
  const plots = labPlots(result, (runId) => svc.store.metrics.curve(runId, 'loss'));
  return { e, result, view: { result, table: labTable(result), plots, jobId: unfinishedJob(svc, e, p.scale) } };
}

export async function labResult(svc: EngineService, p: ValidParams<'lab.result'>): Promise<LabView> {
  return (await readResult(svc, p)).view;
}

export async function labReport(svc: EngineService, p: ValidParams<'lab.report'>): Promise<{ dir: string; markdown: string; plots: string[] }> {
  const { e, result, view } = await readResult(svc, p);
  const dir = path.join(svc.store.layout.exports, `lab-${e.name}-${p.scale}-${Date.now().toString(36)}`);
  return writeLabReport(dir, result, view.plots);
}
