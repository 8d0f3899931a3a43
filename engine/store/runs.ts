// store.runs: fine-tuning, pretraining, quantization, evaluation and conversion
// runs, their status transitions and the process that owns a running one.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidTransitionError, RunBusyError, StoreError } from './errors';
import { currentProcess, isProcessAlive } from './liveness';
import {
  JsonObject,
  ProcessIdentity,
  RESUMABLE_STATUSES,
  RUN_NAME_MAX,
  RUN_TRANSITIONS,
  TERMINAL_STATUSES,
  parseJsonColumn,
  type NewRun,
  type Run,
  type RunKind,
  type RunStatus,
} from './records';
import { json, withForeignKeys, type Sql } from './sql';

interface RunRow {
  id: number;
  kind: RunKind;
  name: string | null;
  status: RunStatus;
  model_id: number | null;
  dataset_id: number | null;
  config: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  error: string | null;
  pid: number | null;
  host: string | null;
  boot_id: string | null;
  proc_start: string | null;
  /** The ProcessIdentity (JSON) of the process that created it; null in rows of schema version 1. */
  queued_by: string | null;
}

/** A run as the Runs page lists it: what it trained on, and how far and how well it got. */
export interface RunOverview {
  run: Run;
  modelName: string | null;
  datasetName: string | null;
  /** The lowest validation loss recorded (NaN points ignored); null when none was. */
  bestValLoss: number | null;
  /** The last step with a training loss; null before the first. */
  lastStep: number | null;
}

export interface RunFilter {
  status?: RunStatus;
  kind?: RunKind;
}

export class RunsRepo {
  constructor(private readonly sql: Sql) {}

  private toRun = (r: RunRow): Run => ({
    id: r.id,
    kind: r.kind,
    name: r.name,
    status: r.status,
    modelId: r.model_id,
    datasetId: r.dataset_id,
    config: parseJsonColumn(JsonObject, r.config, 'run', r.id, 'config'),
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
    owner: r.pid === null || r.host === null || r.boot_id === null ? null : { pid: r.pid, host: r.host, bootId: r.boot_id, startTime: r.proc_start },
  });

  /** A new run, queued by the calling process (see interruptAbandoned). */
  create(r: NewRun): Run {
    const row = withForeignKeys('the model or dataset of this run does not exist', () =>
      this.sql
        .q('INSERT INTO runs (kind, model_id, dataset_id, config, created_at, queued_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING *')
        .get(r.kind, r.modelId ?? null, r.datasetId ?? null, json(r.config ?? {}), Date.now(), json(currentProcess())),
    ) as RunRow;
    return this.toRun(row);
  }

  get(id: number): Run {
    return this.toRun(this.sql.byId<RunRow>('runs', 'run', id));
  }

  /** Newest first. */
  list(filter: RunFilter = {}): Run[] {
    const rows = this.sql
      .q('SELECT * FROM runs WHERE (@status IS NULL OR status = @status) AND (@kind IS NULL OR kind = @kind) ORDER BY id DESC')
      .all({ status: filter.status ?? null, kind: filter.kind ?? null }) as RunRow[];
    return rows.map(this.toRun);
  }

  /**
   * Moves a run to `status` if RUN_TRANSITIONS allows it. Going to running
   * records the calling process as the run's owner (and the first start
   * time); a terminal status records the finish time; failed needs the error,
   * interrupted may carry its reason (a full disk).
   */
  setStatus(id: number, status: RunStatus, { error }: { error?: string } = {}): Run {
    if (status === 'failed' && !error) throw new StoreError(`run ${id}: a failed run needs its error`);
    return this.sql.tx(() => {
      const run = this.get(id);
      if (!RUN_TRANSITIONS[run.status].includes(status)) throw new InvalidTransitionError(id, run.status, status);
      const now = Date.now();
      const owner = status === 'running' ? currentProcess() : run.owner;
      const row = this.sql
        .q(
          `UPDATE runs SET status = ?, error = ?, pid = ?, host = ?, boot_id = ?, proc_start = ?,
             started_at = CASE WHEN ? = 'running' THEN coalesce(started_at, ?) ELSE started_at END,
             finished_at = CASE WHEN ? THEN ? ELSE finished_at END
           WHERE id = ? RETURNING *`,
        )
        .get(
          status,
          status === 'failed' || status === 'interrupted' ? (error ?? null) : null,
          owner?.pid ?? null,
          owner?.host ?? null,
          owner?.bootId ?? null,
          owner?.startTime ?? null,
          status,
          now,
          TERMINAL_STATUSES.includes(status) ? 1 : 0,
          now,
          id,
        ) as RunRow;
      return this.toRun(row);
    });
  }

  /** Names a run (trimmed; an empty name clears it, and it is shown as "run <id>" again). */
  rename(id: number, name: string): Run {
    const trimmed = name.trim();
    if (trimmed.length > RUN_NAME_MAX) throw new StoreError(`run ${id}: a name is at most ${RUN_NAME_MAX} characters`);
    return this.sql.tx(() => {
      this.get(id);
      return this.toRun(this.sql.q('UPDATE runs SET name = ? WHERE id = ? RETURNING *').get(trimmed || null, id) as RunRow);
    });
  }

  /** Every run, newest first, with its model's and dataset's names and the best of its curves. */
  overview(): RunOverview[] {
    const rows = this.sql
      .q(
        `SELECT r.*, m.name AS model_name, d.name AS dataset_name,
           (SELECT min(value) FROM run_metrics WHERE run_id = r.id AND name = 'val_loss') AS best_val_loss,
           (SELECT max(step) FROM run_metrics WHERE run_id = r.id AND name = 'loss') AS last_step
         FROM runs r LEFT JOIN models m ON m.id = r.model_id LEFT JOIN datasets d ON d.id = r.dataset_id
         ORDER BY r.id DESC`,
      )
      .all() as (RunRow & { model_name: string | null; dataset_name: string | null; best_val_loss: number | null; last_step: number | null })[];
    return rows.map((r) => ({
      run: this.toRun(r),
      modelName: r.model_name,
      datasetName: r.dataset_name,
      bestValLoss: r.best_val_loss,
      lastStep: r.last_step,
    }));
  }

  /** Whether the process that owns a running run is still alive. */
  ownerAlive(run: Run): boolean {
    return run.owner !== null && isProcessAlive(run.owner);
  }

  /**
   * Marks as interrupted every run left `running` by a process that is gone
   * (crashed, killed, machine rebooted), and every run left `queued` by a
   * process that ended before starting it. Interrupted, the latter can be
   * resumed like any other: with no checkpoint, resuming starts it from
   * scratch with its recorded configuration. Returns those runs.
   */
  interruptAbandoned(): Run[] {
    const here = currentProcess();
    const abandoned = this.list({ status: 'running' }).filter((r) => r.owner === null || !isProcessAlive(r.owner, here));
    const update = this.sql.q(`UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running' AND pid IS ? AND proc_start IS ? RETURNING *`);
    const neverStarted = (this.sql.q(`SELECT * FROM runs WHERE status = 'queued'`).all() as RunRow[]).filter((r) => {
      const creator = r.queued_by === null ? null : parseJsonColumn(ProcessIdentity, r.queued_by, 'run', r.id, 'queued_by');
      return creator === null || !isProcessAlive(creator, here);
    });
    const updateQueued = this.sql.q(`UPDATE runs SET status = 'interrupted', error = ? WHERE id = ? AND status = 'queued' AND queued_by IS ? RETURNING *`);
    return this.sql.tx(() => [
      ...abandoned.flatMap((r) => {
        // The condition re-checks the owner: another process may have reconciled or resumed it meanwhile.
        const row = update.get(r.id, r.owner?.pid ?? null, r.owner?.startTime ?? null) as RunRow | undefined;
        return row ? [this.toRun(row)] : [];
      }),
      ...neverStarted.flatMap((r) => {
        const row = updateQueued.get('its process ended before the run started', r.id, r.queued_by) as RunRow | undefined;
        return row ? [this.toRun(row)] : [];
      }),
    ]);
  }

  /** The ids of every run (to tell run folders from orphans). */
  ids(): Set<number> {
    return new Set(this.sql.q('SELECT id FROM runs').pluck(true).all() as number[]);
  }

  /** Runs that can be continued: paused or interrupted. Newest first. */
  resumable(): Run[] {
    const rows = this.sql
      .q(`SELECT * FROM runs WHERE status IN (${RESUMABLE_STATUSES.map(() => '?').join(', ')}) ORDER BY id DESC`)
      .all(...RESUMABLE_STATUSES) as RunRow[];
    return rows.map(this.toRun);
  }

  /** <home>/runs/<id>: the run's own files (logs, trainer state). */
  dirFor(id: number): string {
    return path.join(this.sql.layout.runs, String(id));
  }

  /**
   * Deletes a run with its metrics and checkpoints (rows first, then files:
   * an interruption leaves orphan files for gc, never rows without files).
   * A run that is running in a live process is refused.
   */
  remove(id: number): void {
    const run = this.get(id);
    if (run.status === 'running' && this.ownerAlive(run)) throw new RunBusyError(id, run.owner?.pid);
    this.sql.tx(() => this.sql.q('DELETE FROM runs WHERE id = ?').run(id));
    fs.rmSync(path.join(this.sql.layout.checkpoints, String(id)), { recursive: true, force: true });
    fs.rmSync(this.dirFor(id), { recursive: true, force: true });
  }
}
