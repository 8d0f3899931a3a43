// store.checkpoints: the folders a run saves, written before their row and
// verified against the recorded sha256.
import fs from 'node:fs';
import path from 'node:path';
import { writeDirAtomic } from '../io/atomic';
import { digestFolder } from './folder-digest';
import { CheckpointMetrics, parseJsonColumn, type Checkpoint, type CheckpointKind } from './records';
import type { RunsRepo } from './runs';
import { json, type Sql } from './sql';

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
    return this.toCheckpoint(this.sql.byId<CheckpointRow>('checkpoints', 'checkpoint', id));
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
}
