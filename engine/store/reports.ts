// store.reports: what an evaluation, a quantization, an inspection or a conversion found, as JSON.
import { JsonObject, parseJsonColumn, type NewReport, type Report, type ReportKind } from './records';
import { json, withForeignKeys, type Sql } from './sql';

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
    return this.toReport(this.sql.byId<ReportRow>('reports', 'report', id));
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
