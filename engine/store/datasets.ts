// store.datasets: the training files recorded by content hash and split setting.
import { ValidationSplit, parseJsonColumn, type Dataset, type NewDataset } from './records';
import { json, withForeignKeys, type Sql } from './sql';

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
    validationSplit: r.validation_split === null ? null : parseJsonColumn(ValidationSplit, r.validation_split, 'dataset', r.id, 'validation_split'),
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
    return this.toDataset(this.sql.byId<DatasetRow>('datasets', 'dataset', id));
  }

  list(): Dataset[] {
    return (this.sql.q('SELECT * FROM datasets ORDER BY id').all() as DatasetRow[]).map(this.toDataset);
  }

  /** The datasets recorded with these contents (the same file may be recorded once per split setting). */
  findBySha256(sha256: string): Dataset[] {
    return (this.sql.q('SELECT * FROM datasets WHERE sha256 = ? ORDER BY id').all(sha256) as DatasetRow[]).map(this.toDataset);
  }

  remove(id: number): void {
    this.get(id);
    withForeignKeys(`dataset ${id} is used by a run; remove the run first`, () => this.sql.q('DELETE FROM datasets WHERE id = ?').run(id));
  }
}
