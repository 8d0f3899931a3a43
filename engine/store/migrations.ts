// The schema, as a list of migrations. `PRAGMA user_version` holds the number
// of the last one applied. A shipped migration is never edited: later changes
// are new entries (a table rebuild turns foreign_keys off around its
// transaction, as SQLite's ALTER TABLE notes describe).
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

// Conventions: ids are AUTOINCREMENT so that an id is never reused — folders
// are named after run ids, and a leftover folder of a deleted run must not
// be taken for a new run's. Times are INTEGER milliseconds since the epoch.
// Enum columns carry CHECKs matching the lists in records.ts.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE models (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL CHECK (length(name) > 0),
  source TEXT NOT NULL CHECK (source IN ('imported', 'downloaded', 'derived')),
  format TEXT NOT NULL,
  path TEXT NOT NULL,
  config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
  param_count INTEGER CHECK (param_count >= 0),
  bytes INTEGER CHECK (bytes >= 0),
  parent_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
  run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX models_parent ON models(parent_model_id);
CREATE INDEX models_run ON models(run_id);

CREATE TABLE datasets (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL CHECK (length(name) > 0),
  path TEXT NOT NULL,
  format TEXT NOT NULL,
  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
  row_count INTEGER NOT NULL CHECK (row_count >= 0),
  token_count INTEGER CHECK (token_count >= 0),
  validation_split TEXT CHECK (validation_split IS NULL OR json_valid(validation_split)),
  created_at INTEGER NOT NULL
);
CREATE INDEX datasets_sha256 ON datasets(sha256);

CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('finetune', 'quantize', 'eval', 'pretrain', 'convert')),
  status TEXT NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'running', 'paused', 'interrupted', 'completed', 'failed', 'cancelled')),
  model_id INTEGER REFERENCES models(id) ON DELETE RESTRICT,
  dataset_id INTEGER REFERENCES datasets(id) ON DELETE RESTRICT,
  config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  error TEXT,
  -- the process that runs it: a run left 'running' by a process that is gone was interrupted
  pid INTEGER,
  host TEXT,
  boot_id TEXT,
  proc_start TEXT,
  CHECK (status <> 'running' OR (pid IS NOT NULL AND host IS NOT NULL AND boot_id IS NOT NULL)),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_model ON runs(model_id);
CREATE INDEX runs_dataset ON runs(dataset_id);

-- Clustered on (run, metric, step): one run's curve of one metric is a single
-- range scan in step order. value NULL stands for NaN (SQLite turns NaN into NULL).
CREATE TABLE run_metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  wall_time INTEGER NOT NULL,
  PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL CHECK (step >= 0),
  kind TEXT NOT NULL CHECK (kind IN ('full', 'lora', 'quantized')),
  path TEXT NOT NULL UNIQUE,
  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
  bytes INTEGER NOT NULL CHECK (bytes >= 0),
  metrics TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
  created_at INTEGER NOT NULL,
  UNIQUE (run_id, step)
);

CREATE TABLE chats (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL DEFAULT '',
  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
  checkpoint_id INTEGER REFERENCES checkpoints(id) ON DELETE SET NULL,
  system_prompt TEXT NOT NULL DEFAULT '',
  sampling TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(sampling)),
  chat_template TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  CHECK (model_id IS NULL OR checkpoint_id IS NULL)
);
CREATE INDEX chats_updated ON chats(updated_at);
CREATE INDEX chats_model ON chats(model_id);
CREATE INDEX chats_checkpoint ON chats(checkpoint_id);

-- A message's parent is in the same chat: the foreign key is on (chat_id, parent_id).
-- A regenerated answer is a second child of the same parent, never an overwrite.
CREATE TABLE messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
  parent_id INTEGER,
  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  content TEXT NOT NULL,
  content_tokens INTEGER CHECK (content_tokens >= 0),
  prompt_tokens INTEGER CHECK (prompt_tokens >= 0),
  timings TEXT CHECK (timings IS NULL OR json_valid(timings)),
  created_at INTEGER NOT NULL,
  UNIQUE (chat_id, id),
  FOREIGN KEY (chat_id, parent_id) REFERENCES messages(chat_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_children ON messages(chat_id, parent_id, id);

CREATE TABLE reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('quantization', 'evaluation', 'inspection', 'conversion')),
  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
  checkpoint_id INTEGER REFERENCES checkpoints(id) ON DELETE SET NULL,
  run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  body TEXT NOT NULL CHECK (json_valid(body)),
  created_at INTEGER NOT NULL
);
CREATE INDEX reports_model ON reports(model_id);
CREATE INDEX reports_checkpoint ON reports(checkpoint_id);
CREATE INDEX reports_run ON reports(run_id);
`,
  },
  {
    version: 2,
    name: 'the process that queued a run',
    // A queued run has no owner yet; the process that created it is recorded
    // (a ProcessIdentity as JSON) so that a writer can tell one whose creator
    // died before starting it.
    sql: `ALTER TABLE runs ADD COLUMN queued_by TEXT CHECK (queued_by IS NULL OR json_valid(queued_by));`,
  },
  {
    version: 3,
    name: 'a name people give a run',
    // NULL: the run is shown as "run <id>".
    sql: `ALTER TABLE runs ADD COLUMN name TEXT CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200);`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Applies the migrations the database lacks, each in its own IMMEDIATE
 * transaction together with the user_version bump: a crash leaves the
 * database at the previous version, never between two. The version is re-read
 * inside the transaction because another process may have migrated meanwhile.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  for (const m of migrations) {
    db.transaction(() => {
      if (userVersion(db) >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return userVersion(db);
}
