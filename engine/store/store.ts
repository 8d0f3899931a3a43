// The one module that speaks SQL. Everything else in the engine goes through
// the typed repositories of a Store: store.models, store.runs, store.metrics,
// store.checkpoints, store.chats, store.messages, store.reports, store.datasets.
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { writeDirAtomic } from '../io/atomic';
import { InvalidTransitionError, NotFoundError, StoreError } from './errors';
import { digestFolder, folderBytes } from './folder-digest';
import { fromStoredPath, isInside, toStoredPath, type HomeLayout } from './home';
import { currentProcess, isProcessAlive } from './liveness';
import type { ReconcileReport } from './reconcile';
import {
  CheckpointMetrics,
  JsonObject,
  MessageTimings,
  RUN_TRANSITIONS,
  SamplingSettings,
  TERMINAL_STATUSES,
  ValidationSplit,
  parseJsonColumn,
  type Chat,
  type ChatPatch,
  type Checkpoint,
  type CheckpointKind,
  type Dataset,
  type Message,
  type MessagePatch,
  type MessageRole,
  type MetricCurve,
  type MetricPoint,
  type Model,
  type ModelSource,
  type NewChat,
  type NewDataset,
  type NewMessage,
  type NewModel,
  type NewReport,
  type NewRun,
  type Report,
  type ReportKind,
  type Run,
  type RunKind,
  type RunStatus,
} from './records';

type Statement = Database.Statement<unknown[], unknown>;

/** Statement cache, transactions and path mapping shared by the repositories. */
class Sql {
  private readonly statements = new Map<string, Statement>();

  constructor(
    readonly db: Database.Database,
    readonly layout: HomeLayout,
  ) {}

  q(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /**
   * Write transactions start IMMEDIATE: a deferred one that reads first and
   * then writes cannot wait for the lock (SQLite fails it with SQLITE_BUSY at
   * once when another connection wrote meanwhile), while BEGIN IMMEDIATE waits
   * up to the busy timeout.
   */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  stored(absolute: string): string {
    return toStoredPath(this.layout.root, absolute);
  }

  absolute(stored: string): string {
    return fromStoredPath(this.layout.root, stored);
  }
}

function isForeignKeyFailure(err: unknown): boolean {
  // A dangling reference fails with SQLITE_CONSTRAINT_FOREIGNKEY, an ON DELETE RESTRICT with SQLITE_CONSTRAINT_TRIGGER.
  const { code, message } = err as { code?: unknown; message?: unknown };
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT') && message === 'FOREIGN KEY constraint failed';
}

/** Runs `fn`, turning a foreign-key failure into a StoreError that says what was wrong. */
function withForeignKeys<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isForeignKeyFailure(err)) throw new StoreError(what);
    throw err;
  }
}

const json = (value: unknown): string => JSON.stringify(value);

/** The fields of a patch that are set (an explicit `undefined` leaves a field as it is). */
function definedFields<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A folder name from a display name: lower case, [a-z0-9._-] only. */
function slug(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|-+$/g, '');
  return s || 'model';
}

// ---------------------------------------------------------------- models

interface ModelRow {
  id: number;
  name: string;
  source: ModelSource;
  format: string;
  path: string;
  config: string;
  param_count: number | null;
  bytes: number | null;
  parent_model_id: number | null;
  run_id: number | null;
  created_at: number;
}

export class ModelsRepo {
  constructor(private readonly sql: Sql) {}

  private toModel = (r: ModelRow): Model => ({
    id: r.id,
    name: r.name,
    source: r.source,
    format: r.format,
    path: this.sql.absolute(r.path),
    config: parseJsonColumn(JsonObject, r.config, 'model', r.id, 'config'),
    paramCount: r.param_count,
    bytes: r.bytes,
    parentModelId: r.parent_model_id,
    runId: r.run_id,
    createdAt: r.created_at,
  });

  /** Records a model whose files already exist (e.g. imported in place, or bundled). */
  add(m: NewModel): Model {
    const row = withForeignKeys('the parent model or run of this model does not exist', () =>
      this.sql
        .q(
          `INSERT INTO models (name, source, format, path, config, param_count, bytes, parent_model_id, run_id, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        )
        .get(
          m.name,
          m.source,
          m.format,
          this.sql.stored(m.path),
          json(m.config ?? {}),
          m.paramCount ?? null,
          m.bytes ?? null,
          m.parentModelId ?? null,
          m.runId ?? null,
          Date.now(),
        ),
    ) as ModelRow;
    return this.toModel(row);
  }

  /**
   * Writes a model folder under <home>/models atomically (`fill` writes into a
   * temporary folder, which is fsynced and renamed), and only then records it.
   */
  async writeAndAdd(m: Omit<NewModel, 'path' | 'bytes'>, fill: (tmpDir: string) => void | Promise<void>): Promise<Model> {
    const dir = this.freeFolder(slug(m.name));
    await writeDirAtomic(dir, fill);
    try {
      return this.add({ ...m, path: dir, bytes: folderBytes(dir) });
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private freeFolder(base: string): string {
    for (let i = 1; ; i++) {
      const dir = path.join(this.sql.layout.models, i === 1 ? base : `${base}-${i}`);
      const taken = this.sql.q('SELECT 1 FROM models WHERE path = ?').get(this.sql.stored(dir));
      if (!taken && !fs.existsSync(dir)) return dir;
    }
  }

  get(id: number): Model {
    const row = this.sql.q('SELECT * FROM models WHERE id = ?').get(id) as ModelRow | undefined;
    if (!row) throw new NotFoundError('model', id);
    return this.toModel(row);
  }

  list(): Model[] {
    return (this.sql.q('SELECT * FROM models ORDER BY id').all() as ModelRow[]).map(this.toModel);
  }

  /**
   * Forgets a model; with deleteFiles, also deletes its folder when it lies in
   * the home. The row goes first: a crash in between leaves an orphan folder
   * (which gc removes), never a row pointing at deleted files.
   */
  remove(id: number, { deleteFiles = false } = {}): void {
    const model = this.get(id);
    withForeignKeys(`model ${id} is used by a run; remove the run first`, () =>
      this.sql.q('DELETE FROM models WHERE id = ?').run(id),
    );
    if (deleteFiles && isInside(this.sql.layout.root, model.path)) fs.rmSync(model.path, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- datasets

interface DatasetRow {
  id: number;
  name: string;
  path: string;
  format: string;
  sha256: string;
  row_count: number;
  token_count: number | null;
  validation_split: string | null;
  created_at: number;
}

export class DatasetsRepo {
  constructor(private readonly sql: Sql) {}

  private toDataset = (r: DatasetRow): Dataset => ({
    id: r.id,
    name: r.name,
    path: this.sql.absolute(r.path),
    format: r.format,
    sha256: r.sha256,
    rowCount: r.row_count,
    tokenCount: r.token_count,
    validationSplit:
      r.validation_split === null
        ? null
        : parseJsonColumn(ValidationSplit, r.validation_split, 'dataset', r.id, 'validation_split'),
    createdAt: r.created_at,
  });

  add(d: NewDataset): Dataset {
    const row = this.sql
      .q(
        `INSERT INTO datasets (name, path, format, sha256, row_count, token_count, validation_split, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      )
      .get(
        d.name,
        this.sql.stored(d.path),
        d.format,
        d.sha256,
        d.rowCount,
        d.tokenCount ?? null,
        d.validationSplit ? json(d.validationSplit) : null,
        Date.now(),
      ) as DatasetRow;
    return this.toDataset(row);
  }

  get(id: number): Dataset {
    const row = this.sql.q('SELECT * FROM datasets WHERE id = ?').get(id) as DatasetRow | undefined;
    if (!row) throw new NotFoundError('dataset', id);
    return this.toDataset(row);
  }

  list(): Dataset[] {
    return (this.sql.q('SELECT * FROM datasets ORDER BY id').all() as DatasetRow[]).map(this.toDataset);
  }

  /** The datasets recorded with these contents (the same file may be recorded once per split setting). */
  findBySha256(sha256: string): Dataset[] {
    return (this.sql.q('SELECT * FROM datasets WHERE sha256 = ? ORDER BY id').all(sha256) as DatasetRow[]).map(
      this.toDataset,
    );
  }

  remove(id: number): void {
    this.get(id);
    withForeignKeys(`dataset ${id} is used by a run; remove the run first`, () =>
      this.sql.q('DELETE FROM datasets WHERE id = ?').run(id),
    );
  }
}

// ---------------------------------------------------------------- runs

interface RunRow {
  id: number;
  kind: RunKind;
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
    status: r.status,
    modelId: r.model_id,
    datasetId: r.dataset_id,
    config: parseJsonColumn(JsonObject, r.config, 'run', r.id, 'config'),
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
    owner:
      r.pid === null || r.host === null || r.boot_id === null
        ? null
        : { pid: r.pid, host: r.host, bootId: r.boot_id, startTime: r.proc_start },
  });

  /** A new run, queued. */
  create(r: NewRun): Run {
    const row = withForeignKeys('the model or dataset of this run does not exist', () =>
      this.sql
        .q('INSERT INTO runs (kind, model_id, dataset_id, config, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *')
        .get(r.kind, r.modelId ?? null, r.datasetId ?? null, json(r.config ?? {}), Date.now()),
    ) as RunRow;
    return this.toRun(row);
  }

  get(id: number): Run {
    const row = this.sql.q('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    if (!row) throw new NotFoundError('run', id);
    return this.toRun(row);
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
   * time); a terminal status records the finish time; failed needs the error.
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
          status === 'failed' ? error : null,
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

  /** Whether the process that owns a running run is still alive. */
  ownerAlive(run: Run): boolean {
    return run.owner !== null && isProcessAlive(run.owner);
  }

  /**
   * Marks as interrupted every run left `running` by a process that is gone
   * (crashed, killed, machine rebooted). Returns those runs.
   */
  interruptAbandoned(): Run[] {
    const here = currentProcess();
    const abandoned = this.list({ status: 'running' }).filter((r) => r.owner === null || !isProcessAlive(r.owner, here));
    const update = this.sql.q(
      `UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running' AND pid IS ? AND proc_start IS ? RETURNING *`,
    );
    return this.sql.tx(() =>
      abandoned.flatMap((r) => {
        // The condition re-checks the owner: another process may have reconciled or resumed it meanwhile.
        const row = update.get(r.id, r.owner?.pid ?? null, r.owner?.startTime ?? null) as RunRow | undefined;
        return row ? [this.toRun(row)] : [];
      }),
    );
  }

  /** The ids of every run (to tell run folders from orphans). */
  ids(): Set<number> {
    return new Set(this.sql.q('SELECT id FROM runs').pluck(true).all() as number[]);
  }

  /** Runs that can be continued: paused or interrupted. Newest first. */
  resumable(): Run[] {
    const rows = this.sql
      .q(`SELECT * FROM runs WHERE status IN ('paused', 'interrupted') ORDER BY id DESC`)
      .all() as RunRow[];
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
    if (run.status === 'running' && this.ownerAlive(run)) throw new StoreError(`run ${id} is running (pid ${run.owner?.pid})`);
    this.sql.tx(() => this.sql.q('DELETE FROM runs WHERE id = ?').run(id));
    fs.rmSync(path.join(this.sql.layout.checkpoints, String(id)), { recursive: true, force: true });
    fs.rmSync(this.dirFor(id), { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- metrics

export class MetricsRepo {
  private readonly appendTx: Database.Transaction<(runId: number, points: readonly MetricPoint[]) => void>;

  constructor(private readonly sql: Sql) {
    // A replayed step (a run resumed from an older checkpoint) overwrites the old value.
    const insert = sql.q(
      `INSERT INTO run_metrics (run_id, name, step, value, wall_time) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (run_id, name, step) DO UPDATE SET value = excluded.value, wall_time = excluded.wall_time`,
    );
    this.appendTx = sql.db.transaction((runId: number, points: readonly MetricPoint[]) => {
      const now = Date.now();
      for (const p of points) insert.run(runId, p.name, p.step, Number.isNaN(p.value) ? null : p.value, p.wallTime ?? now);
    });
  }

  /** Appends points in one transaction: after a crash all of them are there or none. */
  append(runId: number, points: readonly MetricPoint[]): void {
    withForeignKeys(`no run with id ${runId}`, () => this.appendTx.immediate(runId, points));
  }

  /** One metric of one run in step order; `afterStep` fetches only what is new since a previous read. */
  curve(runId: number, name: string, { afterStep }: { afterStep?: number } = {}): MetricCurve {
    const column = (col: 'step' | 'value' | 'wall_time') =>
      this.sql
        .q(`SELECT ${col} FROM run_metrics WHERE run_id = ? AND name = ? AND step > ? ORDER BY step`)
        .pluck(true)
        .all(runId, name, afterStep ?? -Infinity);
    // One column per query (flat arrays straight from SQLite, about a third
    // faster than building a row object per point), read in one transaction
    // so that all three see the same rows while a writer appends.
    return this.sql.db.transaction(() => {
      const values = column('value') as (number | null)[];
      return {
        name,
        steps: column('step') as number[],
        values: values.includes(null) ? values.map((v) => v ?? NaN) : (values as number[]),
        wallTimes: column('wall_time') as number[],
      };
    })();
  }

  names(runId: number): string[] {
    return this.sql.q('SELECT DISTINCT name FROM run_metrics WHERE run_id = ? ORDER BY name').pluck(true).all(runId) as string[];
  }

  /** The last recorded value of each metric of a run. */
  latest(runId: number): Record<string, { step: number; value: number }> {
    // SQLite takes the bare column `value` from the row holding max(step).
    const rows = this.sql
      .q('SELECT name, max(step) AS step, value FROM run_metrics WHERE run_id = ? GROUP BY name ORDER BY name')
      .all(runId) as { name: string; step: number; value: number | null }[];
    return Object.fromEntries(rows.map((r) => [r.name, { step: r.step, value: r.value ?? NaN }]));
  }
}

// ---------------------------------------------------------------- checkpoints

interface CheckpointRow {
  id: number;
  run_id: number;
  step: number;
  kind: CheckpointKind;
  path: string;
  sha256: string;
  bytes: number;
  metrics: string;
  created_at: number;
}

export class CheckpointsRepo {
  constructor(
    private readonly sql: Sql,
    private readonly runs: RunsRepo,
  ) {}

  private toCheckpoint = (r: CheckpointRow): Checkpoint => ({
    id: r.id,
    runId: r.run_id,
    step: r.step,
    kind: r.kind,
    path: this.sql.absolute(r.path),
    sha256: r.sha256,
    bytes: r.bytes,
    metrics: parseJsonColumn(CheckpointMetrics, r.metrics, 'checkpoint', r.id, 'metrics'),
    createdAt: r.created_at,
  });

  /** <home>/checkpoints/<runId>/step-<step> */
  dirFor(runId: number, step: number): string {
    return path.join(this.sql.layout.checkpoints, String(runId), `step-${step}`);
  }

  /**
   * Writes a checkpoint folder and records it. `fill` writes the files into a
   * temporary folder; they are hashed and fsynced, the folder is renamed to
   * dirFor(runId, step), and only then is the row inserted. So a row always
   * describes a complete, durable folder; a crash or a failing `fill` (disk
   * full) leaves at worst a temporary folder or an unrecorded one, which
   * reconcile reports and gc removes. Writing a step again replaces the
   * previous checkpoint of that step.
   */
  async writeAndRecord(
    runId: number,
    step: number,
    kind: CheckpointKind,
    fill: (tmpDir: string) => void | Promise<void>,
    metrics: Record<string, number> = {},
  ): Promise<Checkpoint> {
    this.runs.get(runId);
    const dir = this.dirFor(runId, step);
    const { sha256, bytes } = await writeDirAtomic(
      dir,
      async (tmp) => {
        await fill(tmp);
        return digestFolder(tmp);
      },
      {
        // A checkpoint of the same step is being replaced: its row goes before
        // its folder, or a crash between the rename and the insert would leave
        // a row whose sha256 does not match the folder.
        beforeRename: () => {
          this.sql.tx(() => this.sql.q('DELETE FROM checkpoints WHERE run_id = ? AND step = ?').run(runId, step));
        },
      },
    );
    try {
      const row = this.sql.tx(
        () =>
          this.sql
            .q(
              `INSERT INTO checkpoints (run_id, step, kind, path, sha256, bytes, metrics, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
            )
            .get(runId, step, kind, this.sql.stored(dir), sha256, bytes, json(metrics), Date.now()) as CheckpointRow,
      );
      return this.toCheckpoint(row);
    } catch (err) {
      // Not recorded (e.g. the disk filled up under the database): the folder would only be an orphan.
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  get(id: number): Checkpoint {
    const row = this.sql.q('SELECT * FROM checkpoints WHERE id = ?').get(id) as CheckpointRow | undefined;
    if (!row) throw new NotFoundError('checkpoint', id);
    return this.toCheckpoint(row);
  }

  /** A run's checkpoints in step order; every checkpoint when no run is given. */
  list(runId?: number): Checkpoint[] {
    const rows = this.sql
      .q('SELECT * FROM checkpoints WHERE @runId IS NULL OR run_id = @runId ORDER BY run_id, step')
      .all({ runId: runId ?? null }) as CheckpointRow[];
    return rows.map(this.toCheckpoint);
  }

  /** Where a run resumes from: its checkpoint with the highest step whose folder exists, or null. */
  resumePoint(runId: number): Checkpoint | null {
    const rows = this.sql.q('SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step DESC').all(runId) as CheckpointRow[];
    for (const r of rows) {
      const c = this.toCheckpoint(r);
      if (fs.existsSync(c.path)) return c;
    }
    return null;
  }

  /** Deletes a checkpoint: the row first, then the folder (see RunsRepo.remove). */
  remove(id: number): void {
    const c = this.get(id);
    this.forget(id);
    fs.rmSync(c.path, { recursive: true, force: true });
  }

  /** Deletes only the row (for a checkpoint whose folder is already gone). */
  forget(id: number): void {
    this.sql.tx(() => this.sql.q('DELETE FROM checkpoints WHERE id = ?').run(id));
  }

  /** Re-hashes the folder and compares it with the recorded sha256 and size. */
  async verify(id: number): Promise<{ ok: boolean; sha256: string | null; bytes: number | null }> {
    const c = this.get(id);
    if (!fs.existsSync(c.path)) return { ok: false, sha256: null, bytes: null };
    const d = await digestFolder(c.path);
    return { ok: d.sha256 === c.sha256 && d.bytes === c.bytes, sha256: d.sha256, bytes: d.bytes };
  }
}

// ---------------------------------------------------------------- chats

interface ChatRow {
  id: number;
  title: string;
  model_id: number | null;
  checkpoint_id: number | null;
  system_prompt: string;
  sampling: string;
  chat_template: string | null;
  created_at: number;
  updated_at: number;
}

const likePattern = (text: string): string => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export class ChatsRepo {
  constructor(private readonly sql: Sql) {}

  private toChat = (r: ChatRow): Chat => ({
    id: r.id,
    title: r.title,
    modelId: r.model_id,
    checkpointId: r.checkpoint_id,
    systemPrompt: r.system_prompt,
    sampling: parseJsonColumn(SamplingSettings, r.sampling, 'chat', r.id, 'sampling'),
    chatTemplate: r.chat_template,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  });

  private write(id: number | null, c: Required<NewChat>): Chat {
    const now = Date.now();
    const values = [
      c.title,
      c.modelId,
      c.checkpointId,
      c.systemPrompt,
      json(SamplingSettings.parse(c.sampling)),
      c.chatTemplate,
    ];
    return withForeignKeys('the model or checkpoint of this chat does not exist', () => {
      const row =
        id === null
          ? this.sql
              .q(
                `INSERT INTO chats (title, model_id, checkpoint_id, system_prompt, sampling, chat_template, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
              )
              .get(...values, now, now)
          : this.sql
              .q(
                `UPDATE chats SET title = ?, model_id = ?, checkpoint_id = ?, system_prompt = ?, sampling = ?,
                   chat_template = ?, updated_at = ? WHERE id = ? RETURNING *`,
              )
              .get(...values, now, id);
      return this.toChat(row as ChatRow);
    });
  }

  create(c: NewChat = {}): Chat {
    if (c.modelId != null && c.checkpointId != null) throw new StoreError('a chat uses a model or a checkpoint, not both');
    return this.write(null, {
      title: c.title ?? '',
      modelId: c.modelId ?? null,
      checkpointId: c.checkpointId ?? null,
      systemPrompt: c.systemPrompt ?? '',
      sampling: c.sampling ?? {},
      chatTemplate: c.chatTemplate ?? null,
    });
  }

  get(id: number): Chat {
    const row = this.sql.q('SELECT * FROM chats WHERE id = ?').get(id) as ChatRow | undefined;
    if (!row) throw new NotFoundError('chat', id);
    return this.toChat(row);
  }

  /** Most recently active first; `search` matches the title or any message (case-insensitive for ASCII). */
  list({ search }: { search?: string } = {}): Chat[] {
    const rows = search
      ? this.sql
          .q(
            `SELECT * FROM chats WHERE title LIKE @pattern ESCAPE '\\'
               OR EXISTS (SELECT 1 FROM messages WHERE messages.chat_id = chats.id AND content LIKE @pattern ESCAPE '\\')
             ORDER BY updated_at DESC, id DESC`,
          )
          .all({ pattern: likePattern(search) })
      : this.sql.q('SELECT * FROM chats ORDER BY updated_at DESC, id DESC').all();
    return (rows as ChatRow[]).map(this.toChat);
  }

  /** Changes some settings; picking a model clears the checkpoint and vice versa. */
  update(id: number, patch: ChatPatch): Chat {
    return this.sql.tx(() => {
      if (patch.modelId != null && patch.checkpointId != null) {
        throw new StoreError('a chat uses a model or a checkpoint, not both');
      }
      const merged = { ...this.get(id), ...definedFields(patch) };
      if (patch.modelId != null) merged.checkpointId = null;
      if (patch.checkpointId != null) merged.modelId = null;
      return this.write(id, {
        title: merged.title ?? '',
        modelId: merged.modelId ?? null,
        checkpointId: merged.checkpointId ?? null,
        systemPrompt: merged.systemPrompt ?? '',
        sampling: merged.sampling ?? {},
        chatTemplate: merged.chatTemplate ?? null,
      });
    });
  }

  /** Deletes a chat with all its messages. */
  remove(id: number): void {
    this.get(id);
    this.sql.tx(() => this.sql.q('DELETE FROM chats WHERE id = ?').run(id));
  }
}

// ---------------------------------------------------------------- messages

interface MessageRow {
  id: number;
  chat_id: number;
  parent_id: number | null;
  role: MessageRole;
  content: string;
  content_tokens: number | null;
  prompt_tokens: number | null;
  timings: string | null;
  created_at: number;
}

export class MessagesRepo {
  constructor(private readonly sql: Sql) {}

  private toMessage = (r: MessageRow): Message => ({
    id: r.id,
    chatId: r.chat_id,
    parentId: r.parent_id,
    role: r.role,
    content: r.content,
    contentTokens: r.content_tokens,
    promptTokens: r.prompt_tokens,
    timings: r.timings === null ? null : parseJsonColumn(MessageTimings, r.timings, 'message', r.id, 'timings'),
    createdAt: r.created_at,
  });

  private touchChat(chatId: number, now: number): void {
    this.sql.q('UPDATE chats SET updated_at = ? WHERE id = ?').run(now, chatId);
  }

  /**
   * Adds a message under `parentId` (null: a first message). A second child of
   * the same parent — a regenerated answer, an edited question — is a new
   * branch; the earlier one stays.
   */
  add(m: NewMessage): Message {
    return withForeignKeys(`chat ${m.chatId} has no message ${m.parentId} (or no such chat)`, () =>
      this.sql.tx(() => {
        const now = Date.now();
        const row = this.sql
          .q(
            `INSERT INTO messages (chat_id, parent_id, role, content, content_tokens, prompt_tokens, timings, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          )
          .get(
            m.chatId,
            m.parentId,
            m.role,
            m.content,
            m.contentTokens ?? null,
            m.promptTokens ?? null,
            m.timings ? json(MessageTimings.parse(m.timings)) : null,
            now,
          ) as MessageRow;
        this.touchChat(m.chatId, now);
        return this.toMessage(row);
      }),
    );
  }

  get(id: number): Message {
    const row = this.sql.q('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
    if (!row) throw new NotFoundError('message', id);
    return this.toMessage(row);
  }

  /** Updates a message in place (an answer being streamed in, or stopped). */
  update(id: number, patch: MessagePatch): Message {
    return this.sql.tx(() => {
      const m = { ...this.get(id), ...definedFields(patch) };
      const now = Date.now();
      const row = this.sql
        .q('UPDATE messages SET content = ?, content_tokens = ?, prompt_tokens = ?, timings = ? WHERE id = ? RETURNING *')
        .get(
          m.content,
          m.contentTokens ?? null,
          m.promptTokens ?? null,
          m.timings ? json(MessageTimings.parse(m.timings)) : null,
          id,
        ) as MessageRow;
      this.touchChat(m.chatId, now);
      return this.toMessage(row);
    });
  }

  /** The first messages of a chat's conversations (more than one when the first message was edited). */
  roots(chatId: number): Message[] {
    return (
      this.sql.q('SELECT * FROM messages WHERE chat_id = ? AND parent_id IS NULL ORDER BY id').all(chatId) as MessageRow[]
    ).map(this.toMessage);
  }

  /** The replies to a message, oldest first: siblings are alternative branches. */
  children(parentId: number): Message[] {
    const chatId = this.get(parentId).chatId;
    return (
      this.sql.q('SELECT * FROM messages WHERE chat_id = ? AND parent_id = ? ORDER BY id').all(chatId, parentId) as MessageRow[]
    ).map(this.toMessage);
  }

  /**
   * The conversation from its first message down to `leafId` (default: the
   * chat's most recent message), in order.
   */
  thread(chatId: number, leafId?: number): Message[] {
    const leaf =
      leafId ?? (this.sql.q('SELECT max(id) FROM messages WHERE chat_id = ?').pluck(true).get(chatId) as number | null);
    if (leaf === null) return [];
    const rows = this.sql
      .q(
        `WITH RECURSIVE up(id, depth) AS (
           SELECT id, 0 FROM messages WHERE id = ? AND chat_id = ?
           UNION ALL
           SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id WHERE m.parent_id IS NOT NULL
         )
         SELECT messages.* FROM up JOIN messages ON messages.id = up.id ORDER BY up.depth DESC`,
      )
      .all(leaf, chatId) as MessageRow[];
    if (!rows.length) throw new NotFoundError(`message in chat ${chatId}`, leaf);
    return rows.map(this.toMessage);
  }

  /** Following the newest reply at every level below `id`: the leaf of the branch shown by default. */
  newestLeaf(id: number): Message {
    const { chatId } = this.get(id);
    // A reply always has a larger id than its parent, so the largest id on the way down is the leaf.
    const leaf = this.sql
      .q(
        `WITH RECURSIVE down(id) AS (
           SELECT @id
           UNION ALL
           SELECT (SELECT max(m.id) FROM messages m WHERE m.chat_id = @chatId AND m.parent_id = down.id) FROM down
           WHERE EXISTS (SELECT 1 FROM messages m WHERE m.chat_id = @chatId AND m.parent_id = down.id)
         )
         SELECT max(id) FROM down`,
      )
      .pluck(true)
      .get({ id, chatId }) as number;
    return this.get(leaf);
  }

  /** Deletes a message and every reply below it. */
  remove(id: number): void {
    const m = this.get(id);
    this.sql.tx(() => {
      this.sql.q('DELETE FROM messages WHERE id = ?').run(id);
      this.touchChat(m.chatId, Date.now());
    });
  }
}

// ---------------------------------------------------------------- reports

interface ReportRow {
  id: number;
  kind: ReportKind;
  model_id: number | null;
  checkpoint_id: number | null;
  run_id: number | null;
  body: string;
  created_at: number;
}

export interface ReportFilter {
  kind?: ReportKind;
  modelId?: number;
  checkpointId?: number;
  runId?: number;
}

export class ReportsRepo {
  constructor(private readonly sql: Sql) {}

  private toReport = (r: ReportRow): Report => ({
    id: r.id,
    kind: r.kind,
    modelId: r.model_id,
    checkpointId: r.checkpoint_id,
    runId: r.run_id,
    body: parseJsonColumn(JsonObject, r.body, 'report', r.id, 'body'),
    createdAt: r.created_at,
  });

  add(r: NewReport): Report {
    const row = withForeignKeys('the model, checkpoint or run of this report does not exist', () =>
      this.sql
        .q(
          `INSERT INTO reports (kind, model_id, checkpoint_id, run_id, body, created_at)
           VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
        )
        .get(r.kind, r.modelId ?? null, r.checkpointId ?? null, r.runId ?? null, json(r.body), Date.now()),
    ) as ReportRow;
    return this.toReport(row);
  }

  get(id: number): Report {
    const row = this.sql.q('SELECT * FROM reports WHERE id = ?').get(id) as ReportRow | undefined;
    if (!row) throw new NotFoundError('report', id);
    return this.toReport(row);
  }

  /** Newest first, narrowed by any of the filter's fields. */
  list(f: ReportFilter = {}): Report[] {
    const rows = this.sql
      .q(
        `SELECT * FROM reports WHERE (@kind IS NULL OR kind = @kind) AND (@modelId IS NULL OR model_id = @modelId)
           AND (@checkpointId IS NULL OR checkpoint_id = @checkpointId) AND (@runId IS NULL OR run_id = @runId)
         ORDER BY id DESC`,
      )
      .all({ kind: f.kind ?? null, modelId: f.modelId ?? null, checkpointId: f.checkpointId ?? null, runId: f.runId ?? null }) as ReportRow[];
    return rows.map(this.toReport);
  }

  remove(id: number): void {
    this.get(id);
    this.sql.tx(() => this.sql.q('DELETE FROM reports WHERE id = ?').run(id));
  }
}

// ---------------------------------------------------------------- the store

export class Store {
  readonly models: ModelsRepo;
  readonly datasets: DatasetsRepo;
  readonly runs: RunsRepo;
  readonly metrics: MetricsRepo;
  readonly checkpoints: CheckpointsRepo;
  readonly chats: ChatsRepo;
  readonly messages: MessagesRepo;
  readonly reports: ReportsRepo;
  /** What reconciling found when this store was opened for writing (set by openStore); null for readers. */
  reconcileReport: ReconcileReport | null = null;
  private readonly sql: Sql;

  /** Use openStore (open.ts), which checks, migrates and reconciles the database first. */
  constructor(
    db: Database.Database,
    readonly layout: HomeLayout,
  ) {
    this.sql = new Sql(db, layout);
    this.models = new ModelsRepo(this.sql);
    this.datasets = new DatasetsRepo(this.sql);
    this.runs = new RunsRepo(this.sql);
    this.metrics = new MetricsRepo(this.sql);
    this.checkpoints = new CheckpointsRepo(this.sql, this.runs);
    this.chats = new ChatsRepo(this.sql);
    this.messages = new MessagesRepo(this.sql);
    this.reports = new ReportsRepo(this.sql);
  }

  get readonly(): boolean {
    return this.sql.db.readonly;
  }

  /** SQLite's full consistency check: ['ok'] for a sound database, otherwise the problems found. */
  integrityCheck(): string[] {
    return this.sql.q('PRAGMA integrity_check').pluck(true).all() as string[];
  }

  close(): void {
    this.sql.db.close();
  }
}
