// The Lab page's requests through the engine service (real store, real job
// manager, the lab job in a child process): lab.list finds an experiment in
// the home's lab folder; lab.result before anything ran says "not measured";
// lab.start trains it as a job, which pauses like any training job and, started
// again, resumes its runs (no variant × seed trained twice); lab.result then
// holds every run, mean ± spread over two seeds, the claim checked, the plots;
// lab.report writes Markdown and SVGs into the home's exports. Every answer is
// checked against its schema.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend/select';
import { EngineService, RequestError } from '../engine/server/service';
import { openStore } from '../engine/store/open';
import { JOB_RESULTS, requests, type EngineEvent, type JobSnapshot, type Method, type Result } from '../engine/protocol/protocol';
import { TINY_LAB, writeTinyLab } from './helpers/lab-fixture';

process.env.MLW_THREADS ??= '1';
let home: string;
let svc: EngineService;
let heldOut: string;
const events: JobSnapshot[] = [];

beforeAll(async () => {
  await initBackend();
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-lab-service-'));
  ({ heldOut } = writeTinyLab(path.join(home, 'lab'), path.join(home, 'texts')));
  svc = new EngineService(openStore({ home }), 'test');
  svc.events.on('event', (e: EngineEvent) => {
    if (e.type === 'job') events.push(e.job);
  });
});
afterAll(async () => {
  await svc.close();
  fs.rmSync(home, { recursive: true, force: true });
});

async function call<M extends Method>(method: M, params: unknown): Promise<Result<M>> {
  // Parsed by M's own result schema (TypeScript sees the union of every method's here).
  return requests[method].result.parse(await svc.handle(method, params)) as Result<M>;
}

/** Resolves with the first announced snapshot of job `id` that `ok` accepts. */
async function jobWhere(id: string, ok: (j: JobSnapshot) => boolean): Promise<JobSnapshot> {
  for (;;) {
    const j = events.find((x) => x.id === id && ok(x));
    if (j) return j;
    const failed = events.find((x) => x.id === id && x.state === 'failed');
    if (failed) throw new Error(`job ${id} failed: ${failed.error}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const target = { experiment: TINY_LAB, scale: 'tiny' as const, evalText: undefined as string | undefined };

describe('the Lab page requests', () => {
  it('lists, runs, pauses, resumes, reads and reports an experiment', async () => {
    target.evalText = heldOut;
    const list = await call('lab.list', {});
    expect(list.filter((x) => x.origin === 'bundled').map((x) => x.name)).toContain('depth-vs-width');
    const mine = list.find((x) => x.name === TINY_LAB)!;
    expect(mine).toMatchObject({ origin: 'home', problem: null, holdEqual: 'parameters' });
    expect(mine.scales.tiny!.variants.map((v) => [v.name, v.depth])).toEqual([
      ['shallow-wide', 2],
      ['deep', 4],
    ]);
    expect(mine.paper.says).toMatch(/deeper and thinner/);

    const before = await call('lab.result', target);
    expect(before.result.complete).toBe(false);
    expect(before.result.rows.map((r) => r.runs)).toEqual([[], []]);
    expect(before.result.claims.map((c) => c.agrees)).toEqual(['not measured']);
    expect(before.plots).toEqual([]);
    expect(before.jobId).toBeNull();
    await expect(svc.handle('lab.result', { ...target, experiment: 'no-such-lab' })).rejects.toMatchObject({ code: 'not_found' });

    // Paused while it trains: the job ends cancelled, the result is partial.
    const first = await call('lab.start', target);
    await expect(svc.handle('lab.start', target)).rejects.toBeInstanceOf(RequestError);
    await jobWhere(first.jobId, (j) => j.runId !== undefined && (j.progress?.done ?? 0) >= 1);
    expect((await call('lab.result', target)).jobId).toBe(first.jobId);
    await call('jobs.cancel', { jobId: first.jobId, mode: 'pause' });
    expect((await jobWhere(first.jobId, (j) => j.state !== 'running')).state).toBe('cancelled');
    const paused = await call('lab.result', target);
    expect(paused.result.complete).toBe(false);
    expect(paused.jobId).toBeNull();
    const startedRuns = paused.result.rows.flatMap((r) => r.runs);
    expect(startedRuns.length).toBeGreaterThan(0);

    // Started again: resumes, trains the rest, measures; the job's result is the table.
    const second = await call('lab.start', target);
    const done = await jobWhere(second.jobId, (j) => j.state !== 'running');
    expect(done.state, done.error).toBe('done');
    const jobResult = JOB_RESULTS.lab.parse(done.kind === 'lab' ? done.result : undefined);
    expect(jobResult.complete).toBe(true);

    const view = await call('lab.result', target);
    const r = view.result;
    expect(r.complete).toBe(true);
    const runs = r.rows.flatMap((row) => row.runs);
    expect(runs.map((x) => x.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    // Each variant × seed trained once: the runs started before the pause are the same runs now.
    for (const s of startedRuns) expect(runs.find((x) => x.runId === s.runId)).toBeDefined();
    const store = openStore({ home, readonly: true });
    try {
      expect(store.runs.list({ kind: 'pretrain' })).toHaveLength(4);
    } finally {
      store.close();
    }
    for (const row of r.rows) {
      expect(row.ppl).toMatchObject({ n: 2 });
      expect(row.ppl!.mean).toBeGreaterThan(1);
      expect(row.ppl!.spread).toBeGreaterThan(0); // two seeds do not land on the same number
    }
    expect(['yes', 'no', 'within noise']).toContain(r.claims[0].agrees);
    expect(r.claims[0].measured).toMatch(/^deep \d+\.\d+ ± \d+\.\d+ vs shallow-wide \d+\.\d+ ± \d+\.\d+$/);
    expect(view.table.columns.map((c) => c.label).slice(0, 6)).toEqual(['variant', 'what', 'params', 'depth', 'val loss', 'held-out ppl']);
    expect(view.table.rows[1].slice(0, 4)).toEqual(['deep', '4 layers × 32', '0.068M', '4']);
    expect(view.table.rows[1][5]).toMatch(/^\d+\.\d\d ± \d+\.\d\d$/);
    expect(view.plots.map((p) => p.name)).toEqual(['ppl-vs-depth', 'loss-vs-step']);
    for (const p of view.plots) expect(p.svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>$/);
    expect(view.plots[1].svg).toContain('shallow-wide');

    const report = await call('lab.report', target);
    expect(path.dirname(report.dir)).toBe(path.join(home, 'exports'));
    const md = fs.readFileSync(report.markdown, 'utf8');
    expect(md).toContain('| paper says | we measured | agrees? |');
    expect(md).toContain(`| deep has a lower held-out perplexity than shallow-wide | ${r.claims[0].measured} | ${r.claims[0].agrees} |`);
    expect(md).toContain('![Held-out perplexity vs depth (parameters held equal)](ppl-vs-depth.svg)');
    expect(report.plots.map((f) => path.basename(f))).toEqual(['ppl-vs-depth.svg', 'loss-vs-step.svg']);
    for (const f of report.plots) expect(fs.readFileSync(f, 'utf8')).toBe(view.plots.find((p) => f.endsWith(`${p.name}.svg`))!.svg + '\n');
  }, 600_000);
});
