// store.metrics: the curves of a run (loss, learning rate, ...), one point per step.
import type Database from 'better-sqlite3';
import type { MetricCurve, MetricPoint } from './records';
import { withForeignKeys, type Sql } from './sql';

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
    const rows = this.sql.q('SELECT name, max(step) AS step, value FROM run_metrics WHERE run_id = ? GROUP BY name ORDER BY name').all(runId) as {
      name: string;
      step: number;
      value: number | null;
    }[];
    return Object.fromEntries(rows.map((r) => [r.name, { step: r.step, value: r.value ?? NaN }]));
  }
}
