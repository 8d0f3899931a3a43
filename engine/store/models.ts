// store.models: the model folders the app knows (imported, downloaded, derived).
import fs from 'node:fs';
import path from 'node:path';
import { writeDirAtomic } from '../io/atomic';
import { folderBytes } from './folder-digest';
import { isInside } from './home';
import { JsonObject, parseJsonColumn, type Model, type ModelSource, type NewModel } from './records';
import { json, withForeignKeys, type Sql } from './sql';

/** A folder name from a display name: lower case, [a-z0-9._-] only. */
function slug(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|-+$/g, '');
  return s || 'model';
}

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
    return this.toModel(this.sql.byId<ModelRow>('models', 'model', id));
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
    withForeignKeys(`model ${id} is used by a run; remove the run first`, () => this.sql.q('DELETE FROM models WHERE id = ?').run(id));
    if (deleteFiles && isInside(this.sql.layout.root, model.path)) fs.rmSync(model.path, { recursive: true, force: true });
  }
}
