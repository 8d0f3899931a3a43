// mlw models / runs / runs show / runs metrics / runs rename / runs delete / checkpoints / gc: what the store holds.
// Listing commands open the store read-only, so they can run next to the
// engine; rename, delete and gc are writers (gc reconciles first, then removes what is orphaned).
// `mlw models` on a fresh home first records the bundled default model, as the app's first start does.
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { isCorruption, moveDatabaseAside } from '../../store/database';
import { CorruptDatabaseError } from '../../store/errors';
import { openStore } from '../../store/open';
import { homeLayout, resolveHome } from '../../store/home';
import { ensureDefaultModel } from '../../server/resources';
import { collectGarbage } from '../../store/reconcile';
import { reregisterModels } from '../../store/reregister';
import { isResumable, RUN_KINDS, RUN_STATUSES, type MetricCurve, type Run, type RunKind, type RunStatus } from '../../store/records';
import type { Store } from '../../store/store';
import { trainedRuntime } from '../../protocol/protocol';
import { UsageError } from '../errors';
import { formatBytes, printJson } from '../format';

interface StoreOpts {
  home?: string;
  json?: boolean;
  moveAside?: boolean;
}

const moveAsideOption = () => new Option('--move-aside', 'if workbench.db is damaged, rename it to workbench.db.corrupt-<time> and start a new one');

/**
 * Opens the store of --home; with --move-aside, a damaged database (its pages
 * checked too, by integrity_check) is renamed (never deleted) and a new one made.
 */
function storeFor(cmd: Command, { readonly }: { readonly: boolean }): Store {
  const opts = cmd.optsWithGlobals() as StoreOpts;
  try {
    return openStore({ home: opts.home, readonly, verify: Boolean(opts.moveAside) });
  } catch (err) {
    if (!(err instanceof CorruptDatabaseError) || !opts.moveAside) throw err;
    const moved = moveDatabaseAside(err.file);
    process.stderr.write(`mlw: moved the damaged ${err.file} to ${moved}\n`);
    return openStore({ home: opts.home, readonly });
  }
}

/** Runs `fn` on the store; damage met on the way (pages no check at opening read) is named with the way out. */
function withStore<T>(cmd: Command, readonly: boolean, fn: (store: Store) => T | Promise<T>): Promise<T> {
  const store = storeFor(cmd, { readonly });
  return Promise.resolve()
    .then(() => fn(store))
    .catch((err: unknown) => {
      if (isCorruption(err)) throw new CorruptDatabaseError(store.layout.db, (err as Error).message, { cause: err });
      throw err;
    })
    .finally(() => store.close());
}

/**
 * A home without a database yet gets the bundled default model, as the app's
 * first start gives it (engine/server/resources.ts), so `mlw models` lists what the app would.
 */
function registerDefaultModelInFreshHome(cmd: Command): void {
  const { home } = cmd.optsWithGlobals() as StoreOpts;
  if (fs.existsSync(homeLayout(resolveHome(home)).db)) return;
  const store = openStore({ home });
  try {
    ensureDefaultModel(store);
  } finally {
    store.close();
  }
}

function parseId(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what}: "${text}" is not an id (a positive integer)`);
  return Number(text);
}

// ---------------------------------------------------------------- human output

function table(headers: string[], rows: string[][], empty: string): string {
  if (!rows.length) return `${empty}\n`;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

const bytes = (n: number | null): string => (n === null ? '-' : formatBytes(n));

function count(n: number | null): string {
  if (n === null) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return String(n);
}

/** Local time, to the minute. */
function when(ms: number | null): string {
  if (ms === null) return '-';
  const d = new Date(ms);
  const p = (x: number) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Wall time of a running or finished run (a paused or interrupted one has no known end). */
function duration(run: Run): string {
  const end = run.finishedAt ?? (run.status === 'running' ? Date.now() : null);
  if (run.startedAt === null || end === null) return '-';
  const s = Math.round((end - run.startedAt) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const metricValue = (v: number): string => (Number.isInteger(v) ? String(v) : v.toPrecision(4));

/**
 * A run as listed: a 'running' run whose process is gone is shown as such (a writer will mark it interrupted);
 * a training run names the runtime that trained it.
 */
function runView(store: Store, run: Run) {
  return { ...run, ownerAlive: run.status === 'running' ? store.runs.ownerAlive(run) : null, runtime: trainedRuntime(run) };
}

function statusText(r: ReturnType<typeof runView>): string {
  return r.ownerAlive === false ? 'running (process gone)' : r.status;
}

/** The metrics asked for with --metric (all of the run's when not given); an unknown name is refused with the names there are. */
function pickMetrics(names: string[], asked: string | undefined, runId: number): string[] {
  if (asked === undefined) return names;
  const wanted = asked
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = wanted.filter((n) => !names.includes(n));
  if (unknown.length) throw new UsageError(`run ${runId} has no metric ${unknown.join(', ')} (it has ${names.length ? names.join(', ') : 'none'})`);
  return wanted;
}

interface MetricRow {
  step: number;
  /** When the step's first point was recorded (ms since the epoch). */
  wallTime: number;
  /** One per curve; undefined where that metric has no point at this step. */
  values: (number | undefined)[];
}

/** Curves side by side, one row per step that any of them has, in step order. */
function metricRows(curves: MetricCurve[]): MetricRow[] {
  const rows = new Map<number, MetricRow>();
  curves.forEach((c, i) =>
    c.steps.forEach((step, j) => {
      let row = rows.get(step);
      if (!row) rows.set(step, (row = { step, wallTime: c.wallTimes[j], values: curves.map(() => undefined) }));
      row.wallTime = Math.min(row.wallTime, c.wallTimes[j]);
      row.values[i] = c.values[j];
    }),
  );
  return [...rows.values()].sort((a, b) => a.step - b.step);
}

/** A CSV header field, quoted when it holds a comma, a quote or a line break. */
const csvField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

// ---------------------------------------------------------------- commands

export function registerStoreCommands(program: Command): void {
  program
    .command('models')
    .description('list the models in the store')
    .option('--json', 'print JSON')
    .addOption(moveAsideOption())
    .action((_opts: StoreOpts, cmd: Command) => {
      registerDefaultModelInFreshHome(cmd);
      return withStore(cmd, true, (store) => {
        const models = store.models.list();
        if (cmd.opts<StoreOpts>().json) return printJson(models);
        const rows = models.map((m) => [String(m.id), m.name, m.source, m.format, count(m.paramCount), bytes(m.bytes), when(m.createdAt), m.path]);
        process.stdout.write(table(['ID', 'NAME', 'SOURCE', 'FORMAT', 'PARAMS', 'SIZE', 'CREATED', 'PATH'], rows, 'no models'));
      });
    });

  const runs = program
    .command('runs')
    .description('list runs, newest first (mlw runs show <id> for one)')
    .addOption(new Option('--status <status>', 'only runs with this status').choices(RUN_STATUSES))
    .addOption(new Option('--kind <kind>', 'only runs of this kind').choices(RUN_KINDS))
    .option('--json', 'print JSON')
    .addOption(moveAsideOption())
    .action((opts: StoreOpts & { status?: RunStatus; kind?: RunKind }, cmd: Command) =>
      withStore(cmd, true, (store) => {
        const list = store.runs.list({ status: opts.status, kind: opts.kind }).map((r) => runView(store, r));
        if (opts.json) return printJson(list);
        const rows = list.map((r) => {
          const latest = Object.entries(store.metrics.latest(r.id));
          return [
            String(r.id),
            r.kind,
            r.runtime ?? '-',
            statusText(r),
            r.modelId === null ? '-' : String(r.modelId),
            when(r.createdAt),
            duration(r),
            latest.length ? latest.map(([k, v]) => `${k} ${metricValue(v.value)} @${v.step}`).join(', ') : '-',
          ];
        });
        process.stdout.write(table(['ID', 'KIND', 'RUNTIME', 'STATUS', 'MODEL', 'CREATED', 'TIME', 'LAST METRICS'], rows, 'no runs'));
      }),
    );

  runs
    .command('show')
    .description('one run: status, config, last metrics, checkpoints, where it resumes from')
    .argument('<id>', 'run id')
    .action((idText: string, _opts: unknown, cmd: Command) =>
      withStore(cmd, true, (store) => {
        const run = runView(store, store.runs.get(parseId(idText, 'run')));
        const detail = {
          run,
          metrics: store.metrics.latest(run.id),
          checkpoints: store.checkpoints.list(run.id),
          resumeFrom: isResumable(run.status) ? store.checkpoints.resumePoint(run.id) : null,
        };
        if ((cmd.optsWithGlobals() as StoreOpts).json) return printJson(detail);
        const lines: [string, string][] = [
          ['run', `${run.id} (${run.kind})`],
          ['name', run.name ?? '-'],
          ['status', statusText(run)],
          ['runtime', run.runtime ?? '-'],
          ['model', run.modelId === null ? '-' : String(run.modelId)],
          ['dataset', run.datasetId === null ? '-' : String(run.datasetId)],
          ['created', when(run.createdAt)],
          ['started', when(run.startedAt)],
          ['finished', when(run.finishedAt)],
          ['time', duration(run)],
          ['process', run.owner ? `pid ${run.owner.pid} on ${run.owner.host}` : '-'],
        ];
        if (run.error) lines.push(['error', run.error]);
        lines.push(['config', JSON.stringify(run.config)]);
        for (const [name, v] of Object.entries(detail.metrics)) lines.push([name, `${metricValue(v.value)} at step ${v.step}`]);
        lines.push(['checkpoints', String(detail.checkpoints.length)]);
        if (detail.resumeFrom) lines.push(['resumes from', `step ${detail.resumeFrom.step} (${detail.resumeFrom.path})`]);
        const w = Math.max(...lines.map(([k]) => k.length));
        process.stdout.write(lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n');
      }),
    );

  runs
    .command('metrics')
    .description("a run's whole curves, one row per step: a table, --csv (step, wall_time, one column per metric) or --json (the curves)")
    .argument('<id>', 'run id')
    .option('--metric <names>', 'only these metrics (comma-separated), e.g. loss,val_loss')
    .option('--csv', 'print CSV')
    .option('--json', 'print JSON')
    .addOption(moveAsideOption())
    .action((idText: string, opts: { metric?: string; csv?: boolean }, cmd: Command) =>
      withStore(cmd, true, (store) => {
        const run = store.runs.get(parseId(idText, 'run'));
        const json = (cmd.optsWithGlobals() as StoreOpts).json;
        if (json && opts.csv) throw new UsageError('--csv and --json cannot be combined');
        const curves = pickMetrics(store.metrics.names(run.id), opts.metric, run.id).map((name) => store.metrics.curve(run.id, name));
        if (json) return printJson({ runId: run.id, curves });
        const rows = metricRows(curves);
        if (opts.csv) {
          const cell = (v: number | undefined) => (v === undefined ? '' : String(v));
          const lines = rows.map((r) => [String(r.step), new Date(r.wallTime).toISOString(), ...r.values.map(cell)].join(','));
          process.stdout.write([['step', 'wall_time', ...curves.map((c) => csvField(c.name))].join(','), ...lines].join('\n') + '\n');
          return;
        }
        const body = rows.map((r) => [String(r.step), ...r.values.map((v) => (v === undefined ? '-' : metricValue(v)))]);
        process.stdout.write(table(['STEP', ...curves.map((c) => c.name.toUpperCase())], body, `run ${run.id} has no metrics`));
      }),
    );

  runs
    .command('rename')
    .description('name a run (an empty name clears it)')
    .argument('<id>', 'run id')
    .argument('<name>', 'the new name')
    .addOption(moveAsideOption())
    .action((idText: string, name: string, _opts: unknown, cmd: Command) =>
      withStore(cmd, false, (store) => {
        const run = store.runs.rename(parseId(idText, 'run'), name);
        process.stdout.write(`run ${run.id} ${run.name === null ? 'has no name now' : `is now named "${run.name}"`}\n`);
      }),
    );

  runs
    .command('delete')
    .description('delete a run that is not running, with its metrics and checkpoints (their folders too)')
    .argument('<id>', 'run id')
    .option('--yes', 'delete without asking (required: there is no undo)')
    .addOption(moveAsideOption())
    .action((idText: string, opts: { yes?: boolean }, cmd: Command) =>
      withStore(cmd, false, (store) => {
        const run = store.runs.get(parseId(idText, 'run'));
        const count = store.checkpoints.list(run.id).length;
        if (!opts.yes) throw new UsageError(`this deletes run ${run.id} and its ${count} checkpoint(s) for good: add --yes to do it`);
        store.runs.remove(run.id);
        process.stdout.write(`deleted run ${run.id} and its ${count} checkpoint(s)\n`);
      }),
    );

  program
    .command('checkpoints')
    .description("list a run's checkpoints in step order")
    .argument('<runId>', 'run id')
    .option('--json', 'print JSON')
    .addOption(moveAsideOption())
    .action((runIdText: string, opts: StoreOpts, cmd: Command) =>
      withStore(cmd, true, (store) => {
        const runId = store.runs.get(parseId(runIdText, 'run')).id;
        const list = store.checkpoints.list(runId);
        if (opts.json) return printJson(list);
        const rows = list.map((c) => [String(c.id), String(c.step), c.kind, bytes(c.bytes), c.sha256.slice(0, 12), when(c.createdAt), c.path]);
        process.stdout.write(table(['ID', 'STEP', 'KIND', 'SIZE', 'SHA256', 'CREATED', 'PATH'], rows, `run ${runId} has no checkpoints`));
      }),
    );

  program
    .command('gc')
    .description('remove files no record refers to, leftovers of killed writers, and records of checkpoints whose files are gone')
    .option('--dry-run', 'only list what would be removed')
    .option('--json', 'print JSON')
    .option('--reregister', 'after a lost database: record the model folders in models/ again, and list what else is unrecorded (removes nothing)')
    .addOption(moveAsideOption())
    .action((opts: StoreOpts & { dryRun?: boolean; reregister?: boolean }, cmd: Command) =>
      // A dry run only reads; a real one opens a writer, whose reconcile already removes dead writers' leftovers.
      withStore(cmd, Boolean(opts.dryRun) && !opts.reregister, (store) => {
        if (opts.reregister) {
          if (opts.dryRun) throw new UsageError('--reregister and --dry-run cannot be combined');
          const found = reregisterModels(store);
          if (opts.json) return printJson(found);
          const lines = [
            ...found.registered.map((m) => `recorded model ${m.id} ${m.name}: ${m.path}`),
            ...found.skipped.map((s) => `skipped ${s.path}: ${s.reason}`),
            ...found.unrecorded.map((p) => `not recorded (copy out what you need before a plain gc): ${p}`),
          ];
          process.stdout.write((lines.length ? lines : ['nothing to re-register']).join('\n') + '\n');
          return;
        }
        const report = collectGarbage(store, { dryRun: Boolean(opts.dryRun) });
        report.tempLeftovers.unshift(...(store.reconcileReport?.removedTemp ?? []));
        if (opts.json) return printJson(report);
        const verb = report.dryRun ? 'would remove' : 'removed';
        const lines = [
          ...report.tempLeftovers.map((p) => `${verb} leftover ${p}`),
          ...report.orphans.map((p) => `${verb} orphan ${p}`),
          ...report.missingCheckpoints.map(
            (c) => `${report.dryRun ? 'would forget' : 'forgot'} checkpoint ${c.id} (run ${c.runId}, step ${c.step}): ${c.path} is gone`,
          ),
        ];
        lines.push(lines.length ? `${verb} ${bytes(report.bytes)} in all` : 'nothing to remove');
        process.stdout.write(lines.join('\n') + '\n');
      }),
    );
}
