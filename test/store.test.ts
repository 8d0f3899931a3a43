// The persistent store against real database files in temporary folders.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempNameFor } from '../engine/io/atomic';
import { moveDatabaseAside } from '../engine/store/database';
import { BadRecordError, CorruptDatabaseError, InvalidTransitionError, NewerDatabaseError, StoreError, UnwritableDatabaseError } from '../engine/store/errors';
import { defaultHome, homeLayout, resolveHome } from '../engine/store/home';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../engine/store/migrations';
import { openStore, type OpenStoreOptions } from '../engine/store/open';
import { collectGarbage, reconcile } from '../engine/store/reconcile';
import {
  CHECKPOINT_KINDS,
  MESSAGE_ROLES,
  MODEL_SOURCES,
  REPORT_KINDS,
  RUN_KINDS,
  RUN_STATUSES,
  RUN_TRANSITIONS,
  requireResumable,
} from '../engine/store/records';
import { errorKind } from '../engine/errors';
import type { Store } from '../engine/store/store';
import { verifyCheckpoint } from './helpers/verify-checkpoint';

let home: string;
const opened: Store[] = [];

function open(options: Omit<OpenStoreOptions, 'home'> = {}): Store {
  const s = openStore({ home, ...options });
  opened.push(s);
  return s;
}

/** Closing twice is harmless, so every store opened by a test is closed here. */
function closeAll(): void {
  for (const s of opened.splice(0)) s.close();
}

/** A raw connection to the same file, to look under the store's API. */
function raw(): Database.Database {
  return new Database(homeLayout(home).db);
}

const sha = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** A pid that belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

/** Whether `chattr +i` works here (root on a file system with the immutable flag). */
function canMakeImmutable(): boolean {
  const probe = path.join(os.tmpdir(), `mlw-chattr-${process.pid}`);
  fs.writeFileSync(probe, '');
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** Sets a path's mtime into the past, beyond the orphan grace period. */
function age(p: string): void {
  const old = new Date(Date.now() - 3600_000);
  fs.utimesSync(p, old, old);
}

function writeFiles(files: Record<string, string | Buffer>) {
  return (dir: string): void => {
    for (const [name, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), content);
    }
  };
}

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-store-'));
});
afterEach(() => {
  closeAll();
  fs.rmSync(home, { recursive: true, force: true });
});

describe('home folder', () => {
  const env = (vars: NodeJS.ProcessEnv, platform: NodeJS.Platform = 'linux') => ({ env: vars, platform, homedir: '/home/u' });

  it('prefers --home, then MLW_HOME, then the platform folder', () => {
    expect(resolveHome('/x/flag', env({ MLW_HOME: '/x/env' }))).toBe('/x/flag');
    expect(resolveHome(undefined, env({ MLW_HOME: '/x/env' }))).toBe('/x/env');
    expect(resolveHome(undefined, env({}))).toBe('/home/u/.local/share/mobilellm-workbench');
  });

  it('follows each platform’s app-data convention', () => {
    expect(defaultHome(env({ XDG_DATA_HOME: '/data' }))).toBe('/data/mobilellm-workbench');
    expect(defaultHome(env({ XDG_DATA_HOME: 'relative/ignored' }))).toBe('/home/u/.local/share/mobilellm-workbench');
    expect(defaultHome(env({}, 'darwin'))).toBe('/home/u/Library/Application Support/MobileLLM Workbench');
    expect(defaultHome(env({ APPDATA: 'C:\\Users\\u\\AppData\\Roaming' }, 'win32'))).toBe('C:\\Users\\u\\AppData\\Roaming\\MobileLLM Workbench');
  });

  it('is created with the database and its folders on first open', () => {
    const nested = path.join(home, 'nested', 'home');
    opened.push(openStore({ home: nested }));
    const l = homeLayout(nested);
    for (const p of [l.db, l.models, l.datasets, l.runs, l.checkpoints]) expect(fs.existsSync(p)).toBe(true);
  });
});

describe('schema and migrations', () => {
  it('migrates an empty file to the current version, in WAL mode with foreign keys on', () => {
    fs.writeFileSync(homeLayout(home).db, '');
    const s = open();
    s.close();
    const db = raw();
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['chats', 'checkpoints', 'datasets', 'messages', 'models', 'reports', 'run_metrics', 'runs']));
    db.close();
  });

  it('keeps the data and the version when opened again', () => {
    open().models.add({ name: 'm', source: 'imported', format: 'safetensors', path: '/abs/m' });
    closeAll();
    const s = open();
    expect(s.models.list().map((m) => m.name)).toEqual(['m']);
    s.close();
    const db = raw();
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
  });

  it('rolls a failing migration back entirely, version included', () => {
    const db = raw();
    migrate(db);
    const broken = [...MIGRATIONS, { version: SCHEMA_VERSION + 1, name: 'broken', sql: 'CREATE TABLE extra (x); SELECT * FROM nowhere;' }];
    expect(() => migrate(db, broken)).toThrow(/nowhere/);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'extra'").pluck().get()).toBe(0);
    db.close();
  });

  it('refuses a database from a newer app, naming both versions, and leaves it untouched', () => {
    open().close();
    const db = raw();
    db.pragma('user_version = 99');
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    const before = sha(homeLayout(home).db);
    let err: unknown;
    try {
      open();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NewerDatabaseError);
    expect((err as Error).message).toContain(homeLayout(home).db);
    expect((err as Error).message).toMatch(new RegExp(`version 99.*up to ${SCHEMA_VERSION}`));
    expect(() => open({ readonly: true })).toThrow(NewerDatabaseError);
    expect(sha(homeLayout(home).db)).toBe(before);
  });

  it('has CHECK constraints that accept exactly the enum values the code knows', () => {
    const s = open();
    const model = s.models.add({ name: 'm', source: MODEL_SOURCES[0], format: 'safetensors', path: '/abs/m' });
    for (const source of MODEL_SOURCES) s.models.add({ name: source, source, format: 'f', path: `/abs/${source}` });
    for (const kind of RUN_KINDS) s.runs.create({ kind, modelId: model.id });
    const run = s.runs.create({ kind: 'finetune' });
    for (const kind of REPORT_KINDS) s.reports.add({ kind, runId: run.id, body: {} });
    const chat = s.chats.create();
    for (const role of MESSAGE_ROLES) s.messages.add({ chatId: chat.id, parentId: null, role, content: role });
    // every status is reachable through allowed transitions
    const reached = new Set<string>(['queued']);
    for (const from of RUN_STATUSES) for (const to of RUN_TRANSITIONS[from]) reached.add(to);
    expect([...reached].sort()).toEqual([...RUN_STATUSES].sort());

    const db = raw();
    const bad: [string, unknown[]][] = [
      ["INSERT INTO runs (kind, created_at) VALUES ('train', 0)", []],
      ["INSERT INTO runs (kind, status, created_at) VALUES ('eval', 'sleeping', 0)", []],
      ["INSERT INTO models (name, source, format, path, created_at) VALUES ('x', 'stolen', 'f', 'p', 0)", []],
      [`INSERT INTO checkpoints (run_id, step, kind, path, sha256, bytes, created_at) VALUES (?, 1, 'half', 'p', ?, 0, 0)`, [run.id, 'a'.repeat(64)]],
      ["INSERT INTO messages (chat_id, role, content, created_at) VALUES (?, 'robot', '', 0)", [chat.id]],
      ["INSERT INTO reports (kind, body, created_at) VALUES ('gossip', '{}', 0)", []],
      ["INSERT INTO runs (kind, config, created_at) VALUES ('eval', 'not json', 0)", []],
      ["INSERT INTO runs (kind, status, created_at) VALUES ('eval', 'failed', 0)", []],
    ];
    for (const [sql, args] of bad) expect(() => db.prepare(sql).run(...args), sql).toThrow(/CHECK constraint failed/);
    // the same checkpoint kinds the code knows are accepted
    for (const [i, kind] of CHECKPOINT_KINDS.entries()) {
      db.prepare(`INSERT INTO checkpoints (run_id, step, kind, path, sha256, bytes, created_at) VALUES (?, ?, ?, ?, ?, 0, 0)`).run(
        run.id,
        i,
        kind,
        `p${i}`,
        'a'.repeat(64),
      );
    }
    db.close();
  });
});

describe('foreign keys', () => {
  it('refuse dangling references and cascade deletions of runs', async () => {
    const s = open();
    expect(() => s.runs.create({ kind: 'finetune', modelId: 42 })).toThrow(StoreError);
    const model = s.models.add({ name: 'm', source: 'imported', format: 'safetensors', path: '/abs/m' });
    const data = s.datasets.add({ name: 'd', path: '/abs/d.jsonl', format: 'jsonl', sha256: 'c'.repeat(64), rowCount: 3 });
    const run = s.runs.create({ kind: 'finetune', modelId: model.id, datasetId: data.id });
    s.metrics.append(run.id, [{ step: 1, name: 'loss', value: 2 }]);
    const ckpt = await s.checkpoints.writeAndRecord(run.id, 1, 'lora', writeFiles({ 'adapter.bin': 'x' }));
    const chat = s.chats.create({ checkpointId: ckpt.id });
    const report = s.reports.add({ kind: 'evaluation', checkpointId: ckpt.id, runId: run.id, body: { ppl: 3 } });

    expect(() => s.models.remove(model.id)).toThrow(/used by a run/);
    expect(() => s.datasets.remove(data.id)).toThrow(/used by a run/);
    expect(s.models.get(model.id).name).toBe('m');

    s.runs.remove(run.id);
    expect(() => s.checkpoints.get(ckpt.id)).toThrow(/no checkpoint/);
    expect(s.metrics.curve(run.id, 'loss').steps).toEqual([]);
    expect(fs.existsSync(ckpt.path)).toBe(false);
    expect(s.chats.get(chat.id).checkpointId).toBeNull();
    expect(s.reports.get(report.id)).toMatchObject({ checkpointId: null, runId: null, body: { ppl: 3 } });
    s.models.remove(model.id);
    s.datasets.remove(data.id);
    expect(s.models.list()).toEqual([]);
    expect(s.datasets.list()).toEqual([]);
  });

  it('keep a message’s parent in the same chat', () => {
    const s = open();
    const a = s.chats.create({ title: 'a' });
    const b = s.chats.create({ title: 'b' });
    const q = s.messages.add({ chatId: a.id, parentId: null, role: 'user', content: 'hi' });
    expect(() => s.messages.add({ chatId: b.id, parentId: q.id, role: 'assistant', content: 'no' })).toThrow(StoreError);
    expect(s.messages.roots(b.id)).toEqual([]);
  });
});

describe('bad database files', () => {
  it('a non-SQLite file is reported with its name and left untouched; it can be moved aside', () => {
    const file = homeLayout(home).db;
    fs.writeFileSync(file, 'these are my notes, not a database\n'.repeat(200));
    const before = sha(file);
    let err: unknown;
    try {
      open();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptDatabaseError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).not.toContain('\n');
    expect(() => open({ readonly: true })).toThrow(CorruptDatabaseError);
    expect(sha(file)).toBe(before);
    expect(fs.existsSync(file + '-wal')).toBe(false);

    const moved = moveDatabaseAside(file, new Date('2025-01-02T03:04:05.006Z'));
    expect(path.basename(moved)).toBe('workbench.db.corrupt-2025-01-02T03-04-05-006Z');
    expect(sha(moved)).toBe(before);
    const s = open();
    expect(s.runs.list()).toEqual([]);
  });

  it('a SQLite file with a damaged schema page is reported and left untouched', () => {
    const s = open();
    s.models.add({ name: 'm', source: 'imported', format: 'f', path: '/abs/m' });
    s.close();
    const file = homeLayout(home).db;
    const bytes = fs.readFileSync(file);
    // Page 1 after the 100-byte file header holds the schema's b-tree.
    crypto.randomFillSync(bytes, 100, 3000);
    fs.writeFileSync(file, bytes);
    expect(() => open()).toThrow(CorruptDatabaseError);
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
  });

  it('a 0-byte database next to the files of a lost one is started anew with a notice naming the file and the way back', () => {
    const layout = homeLayout(home);
    const notices: string[] = [];
    open({ notify: (l) => notices.push(l) }).close();
    expect(notices).toEqual([]); // a first start is no loss
    fs.mkdirSync(path.join(layout.models, 'my-model'));
    fs.mkdirSync(path.join(layout.checkpoints, '3'));
    fs.writeFileSync(layout.db, '');
    for (const side of ['-wal', '-shm']) fs.rmSync(layout.db + side, { force: true });

    const s = open({ notify: (l) => notices.push(l) });
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain(`${layout.db} was empty (0 bytes)`);
    expect(notices[0]).toContain('1 in models/, 1 in checkpoints/');
    expect(notices[0]).toContain('mlw gc --reregister');
    expect(notices[0]).not.toContain('\n');
    expect(s.models.list()).toEqual([]);
    s.close();
    open({ notify: (l) => notices.push(l) });
    expect(notices).toHaveLength(1); // told once: the database is no longer empty
  });

  it('damaged pages behind a sound header and schema are found by verify, named, left untouched, and can be moved aside', () => {
    let s = open();
    const run = s.runs.create({ kind: 'pretrain' });
    s.metrics.append(
      run.id,
      Array.from({ length: 20_000 }, (_, i) => ({ step: i, name: 'loss', value: i / 7 })),
    );
    s.close();
    const file = homeLayout(home).db;
    expect(fs.existsSync(file + '-wal') && fs.statSync(file + '-wal').size).toBeFalsy(); // all in the main file
    const bytes = fs.readFileSync(file);
    const pageSize = bytes.readUInt16BE(16);
    expect(bytes.length / pageSize).toBeGreaterThan(20);
    // Pages from the middle of the file (the metrics' b-tree), the header and schema page untouched.
    bytes.fill(0xa5, 10 * pageSize, 14 * pageSize);
    fs.writeFileSync(file, bytes);

    let err: unknown;
    try {
      open({ verify: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptDatabaseError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain('integrity_check');
    expect((err as Error).message).toContain('--move-aside');
    expect(() => open({ readonly: true, verify: true })).toThrow(CorruptDatabaseError);
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);

    moveDatabaseAside(file);
    s = open({ verify: true });
    expect(s.runs.list()).toEqual([]);
  });

  it.skipIf(!canMakeImmutable())('a database that cannot be written is named with the way out; a reader still reads it', () => {
    const s = open();
    s.models.add({ name: 'm', source: 'imported', format: 'f', path: '/abs/m' });
    s.close();
    const file = homeLayout(home).db;
    // Root ignores permission bits; an immutable file refuses root too.
    execFileSync('chattr', ['+i', file]);
    try {
      let err: unknown;
      try {
        open();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UnwritableDatabaseError);
      expect((err as Error).message).toContain(file);
      expect((err as Error).message).toMatch(/make it and its folder writable, or choose another home with --home or MLW_HOME$/);
      expect(
        open({ readonly: true })
          .models.list()
          .map((m) => m.name),
      ).toEqual(['m']);
    } finally {
      execFileSync('chattr', ['-i', file]);
    }
  });

  it('moving aside takes the side files along, so no stale WAL meets the new database', () => {
    const file = homeLayout(home).db;
    fs.writeFileSync(file, 'garbage');
    fs.writeFileSync(file + '-wal', 'old wal');
    const moved = moveDatabaseAside(file);
    expect(fs.readFileSync(moved + '-wal', 'utf8')).toBe('old wal');
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(file + '-wal')).toBe(false);
  });
});

describe('runs', () => {
  it('move through the allowed statuses only, recording owner and times', () => {
    const s = open();
    const run = s.runs.create({ kind: 'finetune', config: { lr: 1e-4 } });
    expect(run).toMatchObject({ status: 'queued', startedAt: null, owner: null, config: { lr: 1e-4 } });
    const running = s.runs.setStatus(run.id, 'running');
    expect(running.owner).toMatchObject({ pid: process.pid, host: os.hostname() });
    expect(running.startedAt).toBeGreaterThan(0);
    expect(s.runs.setStatus(run.id, 'paused').status).toBe('paused');
    expect(s.runs.setStatus(run.id, 'running').startedAt).toBe(running.startedAt);
    const done = s.runs.setStatus(run.id, 'completed');
    expect(done.finishedAt).toBeGreaterThanOrEqual(running.startedAt!);
    expect(() => s.runs.setStatus(run.id, 'running')).toThrow(InvalidTransitionError);
    const other = s.runs.create({ kind: 'quantize' });
    expect(() => s.runs.setStatus(other.id, 'failed')).toThrow(/needs its error/);
    expect(s.runs.setStatus(other.id, 'failed', { error: 'boom' })).toMatchObject({ status: 'failed', error: 'boom' });
    expect(s.runs.list({ status: 'failed' }).map((r) => r.id)).toEqual([other.id]);
    expect(s.runs.list().map((r) => r.id)).toEqual([other.id, run.id]);
  });

  it('left running by a dead process become interrupted on open, resumable from their last checkpoint', async () => {
    let s = open();
    const withCkpt = s.runs.create({ kind: 'finetune' });
    const without = s.runs.create({ kind: 'finetune' });
    const otherBoot = s.runs.create({ kind: 'eval' });
    const alive = s.runs.create({ kind: 'eval' });
    for (const r of [withCkpt, without, otherBoot, alive]) s.runs.setStatus(r.id, 'running');
    await s.checkpoints.writeAndRecord(withCkpt.id, 10, 'full', writeFiles({ 'w.bin': 'ten' }));
    const last = await s.checkpoints.writeAndRecord(withCkpt.id, 20, 'full', writeFiles({ 'w.bin': 'twenty' }));
    s.close();
    const db = raw();
    const dead = deadPid();
    db.prepare('UPDATE runs SET pid = ? WHERE id IN (?, ?)').run(dead, withCkpt.id, without.id);
    db.prepare("UPDATE runs SET boot_id = 'another-boot' WHERE id = ?").run(otherBoot.id);
    db.close();

    s = open();
    const report = s.reconcileReport!;
    expect(report.interrupted.map((i) => [i.run.id, i.resumeFrom?.id ?? null]).sort()).toEqual(
      [
        [withCkpt.id, last.id],
        [without.id, null],
        [otherBoot.id, null],
      ].sort(),
    );
    expect(s.runs.get(alive.id).status).toBe('running');
    expect(
      s.runs
        .resumable()
        .map((r) => r.id)
        .sort(),
    ).toEqual([withCkpt.id, without.id, otherBoot.id].sort());
    expect(s.checkpoints.resumePoint(withCkpt.id)?.step).toBe(20);
    // resuming claims it again for this process
    expect(s.runs.setStatus(withCkpt.id, 'running').owner?.pid).toBe(process.pid);
  });

  it('left queued by a process that ended before starting them become interrupted on open (resumable from scratch)', () => {
    let s = open();
    const orphaned = s.runs.create({ kind: 'finetune', config: { lr: 1e-4 } });
    const otherBoot = s.runs.create({ kind: 'pretrain' });
    const ours = s.runs.create({ kind: 'eval' });
    s.close();
    const db = raw();
    const identity = (id: number) => JSON.parse(db.prepare('SELECT queued_by FROM runs WHERE id = ?').pluck().get(id) as string);
    expect(identity(ours.id)).toMatchObject({ pid: process.pid, host: os.hostname() });
    db.prepare('UPDATE runs SET queued_by = ? WHERE id = ?').run(JSON.stringify({ ...identity(orphaned.id), pid: deadPid() }), orphaned.id);
    db.prepare('UPDATE runs SET queued_by = ? WHERE id = ?').run(JSON.stringify({ ...identity(otherBoot.id), bootId: 'another-boot' }), otherBoot.id);
    db.close();

    s = open();
    expect(s.reconcileReport!.interrupted.map((i) => [i.run.id, i.resumeFrom]).sort()).toEqual(
      [
        [orphaned.id, null],
        [otherBoot.id, null],
      ].sort(),
    );
    expect(s.runs.get(orphaned.id)).toMatchObject({ status: 'interrupted', error: 'its process ended before the run started', config: { lr: 1e-4 } });
    expect(s.runs.get(ours.id).status).toBe('queued');
    expect(() => requireResumable(s.runs.get(orphaned.id))).not.toThrow();
    // resuming starts it and clears the reason
    expect(s.runs.setStatus(orphaned.id, 'running')).toMatchObject({ status: 'running', error: null });
  });

  it('queued in a database of schema version 1 (no creator recorded) are taken as abandoned', () => {
    const file = homeLayout(home).db;
    const db = new Database(file);
    migrate(db, MIGRATIONS.slice(0, 1));
    db.prepare("INSERT INTO runs (kind, created_at) VALUES ('finetune', 0)").run();
    db.close();
    const s = open();
    expect(s.runs.get(1).status).toBe('interrupted');
  });

  it('resume only when paused or interrupted (else a conflict), and are not removed while a live process runs them (busy)', () => {
    const s = open();
    const run = s.runs.create({ kind: 'finetune' });
    const refusal = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        return { kind: errorKind(e), message: (e as Error).message };
      }
      return null;
    };
    expect(refusal(() => requireResumable(s.runs.get(run.id)))).toEqual({
      kind: 'conflict',
      message: `run ${run.id} is queued; only paused or interrupted runs can be resumed`,
    });
    s.runs.setStatus(run.id, 'running');
    expect(refusal(() => s.runs.remove(run.id))).toEqual({ kind: 'busy', message: `run ${run.id} is running (pid ${process.pid})` });
    s.runs.setStatus(run.id, 'interrupted');
    expect(refusal(() => requireResumable(s.runs.get(run.id)))).toBeNull();
    s.runs.setStatus(run.id, 'running');
    s.runs.setStatus(run.id, 'paused');
    expect(s.runs.resumable().map((r) => r.id)).toEqual([run.id]);
    expect(refusal(() => requireResumable(s.runs.get(run.id)))).toBeNull();
    s.runs.remove(run.id);
    expect(s.runs.ids().size).toBe(0);
  });

  it('are not touched by a reader', () => {
    const s = open();
    const r = s.runs.create({ kind: 'eval' });
    s.runs.setStatus(r.id, 'running');
    s.close();
    const db = raw();
    db.prepare('UPDATE runs SET pid = ? WHERE id = ?').run(deadPid(), r.id);
    db.close();
    const reader = open({ readonly: true });
    const seen = reader.runs.get(r.id);
    expect(seen.status).toBe('running');
    expect(reader.runs.ownerAlive(seen)).toBe(false);
    expect(reader.reconcileReport).toBeNull();
  });
});

describe('a reader next to the writer', () => {
  it('sees committed rows while the writer is open, and cannot write', () => {
    const writer = open();
    const reader = open({ readonly: true });
    writer.models.add({ name: 'live', source: 'downloaded', format: 'safetensors', path: '/abs/live' });
    expect(reader.models.list().map((m) => m.name)).toEqual(['live']);
    expect(() => reader.runs.create({ kind: 'eval' })).toThrow(/readonly/);
  });

  it('creates a missing database instead of failing', () => {
    const reader = open({ readonly: true });
    expect(reader.runs.list()).toEqual([]);
    expect(reader.readonly).toBe(true);
  });
});

describe('checkpoints', () => {
  it('are written atomically under checkpoints/<run>/step-<n> and recorded with the folder’s sha256', async () => {
    const s = open();
    const run = s.runs.create({ kind: 'finetune' });
    const c = await s.checkpoints.writeAndRecord(
      run.id,
      100,
      'lora',
      writeFiles({ 'adapter_model.safetensors': Buffer.alloc(1000, 7), 'adapter_config.json': '{"r":8}', 'optim/state.bin': 'abc' }),
      { loss: 1.5, val_loss: NaN },
    );
    expect(c.path).toBe(path.join(home, 'checkpoints', String(run.id), 'step-100'));
    expect(c.bytes).toBe(1000 + 7 + 3);
    // the documented manifest: "<sha256>  <path>\n" per file, sorted
    const manifest = ['adapter_config.json', 'adapter_model.safetensors', 'optim/state.bin'].map((f) => `${sha(path.join(c.path, f))}  ${f}\n`).join('');
    expect(c.sha256).toBe(crypto.createHash('sha256').update(manifest).digest('hex'));
    expect(c.metrics).toEqual({ loss: 1.5, val_loss: null });
    expect(await verifyCheckpoint(s.checkpoints.get(c.id))).toMatchObject({ ok: true });
    fs.appendFileSync(path.join(c.path, 'adapter_config.json'), ' ');
    expect(await verifyCheckpoint(s.checkpoints.get(c.id))).toMatchObject({ ok: false });
    // stored relative to the home
    const db = raw();
    expect(db.prepare('SELECT path FROM checkpoints WHERE id = ?').pluck().get(c.id)).toBe(`checkpoints/${run.id}/step-100`);
    db.close();
  });

  it('of the same step replace the earlier one, row and folder', async () => {
    const s = open();
    const run = s.runs.create({ kind: 'finetune' });
    const first = await s.checkpoints.writeAndRecord(run.id, 5, 'full', writeFiles({ 'w.bin': 'old' }));
    const second = await s.checkpoints.writeAndRecord(run.id, 5, 'full', writeFiles({ 'w.bin': 'new!' }));
    expect(s.checkpoints.list(run.id).map((c) => c.id)).toEqual([second.id]);
    expect(second.sha256).not.toBe(first.sha256);
    expect(fs.readFileSync(path.join(second.path, 'w.bin'), 'utf8')).toBe('new!');
    expect(fs.readdirSync(path.dirname(second.path))).toEqual(['step-5']);
  });

  it('disk full while writing: the run fails cleanly, nothing half-recorded, earlier checkpoints intact', async () => {
    let s = open();
    const run = s.runs.create({ kind: 'finetune' });
    s.runs.setStatus(run.id, 'running');
    const good = await s.checkpoints.writeAndRecord(run.id, 1, 'full', writeFiles({ 'w.bin': Buffer.alloc(4096, 1) }));
    const diskFull = async (dir: string): Promise<void> => {
      fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.alloc(2048, 2));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    // what a trainer does when saving fails
    await expect(s.checkpoints.writeAndRecord(run.id, 2, 'full', diskFull)).rejects.toMatchObject({ code: 'ENOSPC' });
    s.runs.setStatus(run.id, 'failed', { error: 'saving checkpoint at step 2: ENOSPC: no space left on device, write' });

    expect(s.checkpoints.list(run.id).map((c) => c.step)).toEqual([1]);
    expect(fs.readdirSync(path.join(home, 'checkpoints', String(run.id)))).toEqual(['step-1']);
    expect(await verifyCheckpoint(s.checkpoints.get(good.id))).toMatchObject({ ok: true });
    s.close();

    s = open();
    expect(s.runs.get(run.id)).toMatchObject({ status: 'failed', error: expect.stringContaining('ENOSPC') });
    expect(s.reconcileReport).toMatchObject({ interrupted: [], removedTemp: [], orphans: [], missing: [] });
    expect(collectGarbage(s, { dryRun: true, graceMs: 0 })).toMatchObject({ tempLeftovers: [], orphans: [], missingCheckpoints: [] });
  });
});

describe('reconcile and gc', () => {
  async function scene(s: Store) {
    const run = s.runs.create({ kind: 'finetune' });
    const kept = await s.checkpoints.writeAndRecord(run.id, 1, 'full', writeFiles({ 'w.bin': 'kept' }));
    const lost = await s.checkpoints.writeAndRecord(run.id, 2, 'full', writeFiles({ 'w.bin': 'lost' }));
    const model = await s.models.writeAndAdd(
      { name: 'My Model', source: 'derived', format: 'safetensors', runId: run.id },
      writeFiles({ 'model.safetensors': 'm' }),
    );
    fs.rmSync(lost.path, { recursive: true });
    const l = homeLayout(home);
    const orphans = {
      unrecordedStep: path.join(l.checkpoints, String(run.id), 'step-3'),
      unknownRun: path.join(l.checkpoints, '999'),
      strayModel: path.join(l.models, 'stray'),
      strayRunFolder: path.join(l.runs, '12345'),
    };
    for (const p of Object.values(orphans)) writeFiles({ 'f.bin': 'orphan' })(p);
    for (const p of Object.values(orphans)) age(p);
    const recent = path.join(l.models, 'being-recorded');
    writeFiles({ 'f.bin': 'new' })(recent);
    fs.mkdirSync(s.runs.dirFor(run.id));
    const deadTemp = tempNameFor(path.join(l.checkpoints, String(run.id), 'step-4')).replace(`-${process.pid}-`, `-${deadPid()}-`);
    const liveTemp = tempNameFor(path.join(l.checkpoints, String(run.id), 'step-5'));
    fs.mkdirSync(deadTemp);
    fs.mkdirSync(liveTemp);
    return { run, kept, lost, model, orphans, recent, deadTemp, liveTemp };
  }

  it('open removes dead writers’ temp folders and reports orphans and missing files', async () => {
    let s = open();
    const sc = await scene(s);
    s.close();
    s = open();
    const r = s.reconcileReport!;
    expect(r.removedTemp).toEqual([sc.deadTemp]);
    expect(fs.existsSync(sc.deadTemp)).toBe(false);
    expect(fs.existsSync(sc.liveTemp)).toBe(true);
    expect(r.orphans.sort()).toEqual(Object.values(sc.orphans).sort());
    expect(r.missing).toEqual([{ kind: 'checkpoint', id: sc.lost.id, path: sc.lost.path }]);
    // reporting deletes nothing
    for (const p of Object.values(sc.orphans)) expect(fs.existsSync(p)).toBe(true);
    expect(s.checkpoints.list(sc.run.id)).toHaveLength(2);
  });

  it('gc --dry-run lists, gc removes orphans and forgets missing checkpoints, keeping everything recorded', async () => {
    const s = open();
    const sc = await scene(s);
    const dry = collectGarbage(s, { dryRun: true });
    expect(dry.orphans.sort()).toEqual(Object.values(sc.orphans).sort());
    expect(dry.missingCheckpoints.map((c) => c.id)).toEqual([sc.lost.id]);
    expect(dry.bytes).toBe(4 * 'orphan'.length);
    for (const p of Object.values(sc.orphans)) expect(fs.existsSync(p)).toBe(true);
    expect(s.checkpoints.list(sc.run.id)).toHaveLength(2);

    const done = collectGarbage(s);
    expect(done.orphans.sort()).toEqual(dry.orphans.sort());
    for (const p of Object.values(sc.orphans)) expect(fs.existsSync(p)).toBe(false);
    expect(fs.existsSync(sc.recent)).toBe(true);
    expect(fs.existsSync(sc.liveTemp)).toBe(true);
    expect(fs.existsSync(s.runs.dirFor(sc.run.id))).toBe(true);
    expect(s.checkpoints.list(sc.run.id).map((c) => c.id)).toEqual([sc.kept.id]);
    expect(await verifyCheckpoint(s.checkpoints.get(sc.kept.id))).toMatchObject({ ok: true });
    expect(fs.existsSync(s.models.get(sc.model.id).path)).toBe(true);
    expect(reconcile(s, { graceMs: 0 }).orphans).toEqual([sc.recent]);
  });
});

describe('models and datasets', () => {
  it('writeAndAdd puts a model folder in models/ under a free name and records its size', async () => {
    const s = open();
    const a = await s.models.writeAndAdd(
      { name: 'MobileLLM 125M', source: 'downloaded', format: 'safetensors', paramCount: 124_600_000 },
      writeFiles({ 'config.json': '{}', 'model.safetensors': Buffer.alloc(100) }),
    );
    const b = await s.models.writeAndAdd(
      { name: 'MobileLLM 125M', source: 'derived', format: 'safetensors', parentModelId: a.id },
      writeFiles({ 'config.json': '{}' }),
    );
    expect(a.path).toBe(path.join(home, 'models', 'mobilellm-125m'));
    expect(b.path).toBe(path.join(home, 'models', 'mobilellm-125m-2'));
    expect(a).toMatchObject({ bytes: 102, paramCount: 124_600_000 });
    expect(s.models.get(b.id).parentModelId).toBe(a.id);
  });

  it('paths inside the home survive moving the home; outside paths stay absolute', async () => {
    let s = open();
    const inside = await s.models.writeAndAdd({ name: 'in', source: 'imported', format: 'safetensors' }, writeFiles({ 'config.json': '{}' }));
    const outside = s.models.add({ name: 'out', source: 'imported', format: 'safetensors', path: '/somewhere/else' });
    const ds = s.datasets.add({
      name: 'd',
      path: '/data/train.jsonl',
      format: 'jsonl-chat',
      sha256: 'b'.repeat(64),
      rowCount: 10,
      validationSplit: { fraction: 0.1, seed: 1 },
    });
    s.close();
    const moved = home + '-moved';
    fs.renameSync(home, moved);
    home = moved;
    s = open();
    expect(s.models.get(inside.id).path).toBe(path.join(moved, 'models', 'in'));
    expect(s.models.get(outside.id).path).toBe('/somewhere/else');
    expect(s.datasets.findBySha256('b'.repeat(64))).toEqual([ds]);
    expect(s.reconcileReport!.missing.map((m) => m.kind).sort()).toEqual(['dataset', 'model']);
  });
});

describe('metrics', () => {
  it('round-trip 100k rows in step order, NaN included', () => {
    const s = open();
    const run = s.runs.create({ kind: 'pretrain' });
    const N = 100_000;
    const loss = (step: number) => 10 / (1 + step / 1000);
    for (let start = 0; start < N; start += 10_000) {
      const batch = [];
      for (let step = start; step < start + 10_000; step++) {
        batch.push({ step, name: 'loss', value: step === 777 ? NaN : loss(step), wallTime: 1_700_000_000_000 + step });
        if (step % 100 === 0) batch.push({ step, name: 'lr', value: 1e-4 });
      }
      s.metrics.append(run.id, batch);
    }
    const curve = s.metrics.curve(run.id, 'loss');
    expect(curve.steps).toHaveLength(N);
    expect(curve.steps.every((st, i) => st === i)).toBe(true);
    expect(curve.values.every((v, i) => (i === 777 ? Number.isNaN(v) : v === loss(i)))).toBe(true);
    expect(curve.wallTimes[N - 1]).toBe(1_700_000_000_000 + N - 1);
    expect(s.metrics.curve(run.id, 'loss', { afterStep: N - 3 }).steps).toEqual([N - 2, N - 1]);
    expect(s.metrics.names(run.id)).toEqual(['loss', 'lr']);
    expect(s.metrics.latest(run.id)).toEqual({ loss: { step: N - 1, value: loss(N - 1) }, lr: { step: N - 100, value: 1e-4 } });
  });

  it('append is all or nothing, and a replayed step overwrites', () => {
    const s = open();
    const run = s.runs.create({ kind: 'finetune' });
    s.metrics.append(run.id, [{ step: 1, name: 'loss', value: 3 }]);
    const bad = [
      { step: 2, name: 'loss', value: 2 },
      { step: 3, name: null as unknown as string, value: 1 },
    ];
    expect(() => s.metrics.append(run.id, bad)).toThrow(/NOT NULL/);
    expect(s.metrics.curve(run.id, 'loss').steps).toEqual([1]);
    s.metrics.append(run.id, [{ step: 1, name: 'loss', value: 2.5 }]);
    expect(s.metrics.curve(run.id, 'loss').values).toEqual([2.5]);
    expect(() => s.metrics.append(run.id + 1, [{ step: 1, name: 'loss', value: 1 }])).toThrow(/no run/);
  });
});

describe('chats and messages', () => {
  it('a regenerated answer is a sibling branch; the earlier one stays', () => {
    const s = open();
    const chat = s.chats.create({ title: 'hello', systemPrompt: 'Be brief.', sampling: { temperature: 0.7, topK: 40 } });
    const q = s.messages.add({ chatId: chat.id, parentId: null, role: 'user', content: 'What is RoPE?' });
    const a1 = s.messages.add({ chatId: chat.id, parentId: q.id, role: 'assistant', content: 'A rotary…', timings: { firstTokenMs: 30, tokensPerSecond: 42 } });
    const a2 = s.messages.add({ chatId: chat.id, parentId: q.id, role: 'assistant', content: 'Rotary position embeddings.' });
    const follow = s.messages.add({ chatId: chat.id, parentId: a1.id, role: 'user', content: 'More?' });

    expect(s.messages.children(q.id).map((m) => m.id)).toEqual([a1.id, a2.id]);
    expect(s.messages.get(a1.id).content).toBe('A rotary…');
    expect(s.messages.thread(chat.id, a2.id).map((m) => m.id)).toEqual([q.id, a2.id]);
    expect(s.messages.thread(chat.id).map((m) => m.id)).toEqual([q.id, a1.id, follow.id]);
    expect(s.messages.newestLeaf(q.id).id).toBe(a2.id);
    expect(s.messages.newestLeaf(a1.id).id).toBe(follow.id);

    // edit-and-resend of the first question: a second root
    const edited = s.messages.add({ chatId: chat.id, parentId: null, role: 'user', content: 'What is RoPE, briefly?' });
    expect(s.messages.roots(chat.id).map((m) => m.id)).toEqual([q.id, edited.id]);

    // an answer streamed in and stopped
    const partial = s.messages.add({ chatId: chat.id, parentId: edited.id, role: 'assistant', content: '' });
    const stopped = s.messages.update(partial.id, { content: 'Rot', contentTokens: 1, timings: { stopped: true } });
    expect(stopped).toMatchObject({ content: 'Rot', contentTokens: 1, timings: { stopped: true }, parentId: edited.id });

    // deleting a message deletes its replies
    s.messages.remove(a1.id);
    expect(() => s.messages.get(follow.id)).toThrow(/no message/);
    expect(s.messages.children(q.id).map((m) => m.id)).toEqual([a2.id]);
  });

  it('chats are listed most recent first, searchable, and updated without losing unset fields', () => {
    const s = open();
    const model = s.models.add({ name: 'm', source: 'imported', format: 'f', path: '/abs/m' });
    const a = s.chats.create({ title: '100% sure', modelId: model.id, sampling: { temperature: 0.2 } });
    const b = s.chats.create({ title: 'other' });
    s.messages.add({ chatId: b.id, parentId: null, role: 'user', content: 'tell me about quantization' });
    expect(s.chats.list().map((c) => c.id)[0]).toBe(b.id);
    expect(s.chats.list({ search: 'QUANT' }).map((c) => c.id)).toEqual([b.id]);
    expect(s.chats.list({ search: '100%' }).map((c) => c.id)).toEqual([a.id]);
    expect(s.chats.list({ search: '0_' })).toEqual([]);

    const renamed = s.chats.update(a.id, { title: 'renamed', systemPrompt: undefined });
    expect(renamed).toMatchObject({ title: 'renamed', modelId: model.id, sampling: { temperature: 0.2 } });
    expect(() => s.chats.create({ modelId: model.id, checkpointId: 1 })).toThrow(/not both/);

    s.models.remove(model.id);
    expect(s.chats.get(a.id).modelId).toBeNull();
    s.chats.remove(b.id);
    expect(s.chats.list().map((c) => c.id)).toEqual([a.id]);
    const db = raw();
    expect(db.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
    db.close();
  });

  it('JSON columns are validated when read back', () => {
    const s = open();
    const chat = s.chats.create({ sampling: { topP: 0.9 } });
    const db = raw();
    db.prepare(`UPDATE chats SET sampling = '{"topP": 7}' WHERE id = ?`).run(chat.id);
    db.close();
    expect(() => s.chats.get(chat.id)).toThrow(BadRecordError);
    expect(() => s.chats.get(chat.id)).toThrow(/chat \d+: column sampling/);
  });
});

describe('reports', () => {
  it('are linked to what they measured and filtered by it', () => {
    const s = open();
    const m1 = s.models.add({ name: 'a', source: 'imported', format: 'f', path: '/abs/a' });
    const m2 = s.models.add({ name: 'b', source: 'imported', format: 'f', path: '/abs/b' });
    const q = s.reports.add({ kind: 'quantization', modelId: m1.id, body: { scheme: 'w8a8', ppl: 12.5 } });
    s.reports.add({ kind: 'inspection', modelId: m2.id, body: { layers: 30 } });
    expect(s.reports.list({ modelId: m1.id })).toEqual([q]);
    expect(s.reports.list({ kind: 'inspection' }).map((r) => r.modelId)).toEqual([m2.id]);
    expect(s.reports.list()).toHaveLength(2);
    s.reports.remove(q.id);
    expect(s.reports.list({ modelId: m1.id })).toEqual([]);
  });
});
