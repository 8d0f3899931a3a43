// `mlw models / runs / runs show / checkpoints / gc` as a user runs them:
// `node bin/mlw.js …` against a home prepared through the store, with exit
// codes, JSON on stdout and one-line errors on stderr.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { homeLayout } from '../engine/store/home';
import { SCHEMA_VERSION } from '../engine/store/migrations';
import { openStore } from '../engine/store/open';
import type { Checkpoint, Model, Run } from '../engine/store/records';
import type { Store } from '../engine/store/store';
import type { ReregisterReport } from '../engine/store/reregister';
import { tinyModelDir } from './helpers/train-fixtures';
import { bundledResources, ensureDefaultModel } from '../engine/server/resources';
import { mlwProcess as runMlw, type MlwResult as Result } from './helpers/mlw-process';

function mlw(...args: string[]): Promise<Result> {
  return runMlw(args);
}

const json = (r: Result): unknown => {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
};

const sha = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

let root: string;
let home: string;
/** The engine's connection, open (as a writer) the whole time the CLI runs. */
let engine: Store;
let model: Model;
let done: Run;
let abandoned: Run;
let ckpts: Checkpoint[];
let orphan: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-cli-'));
  home = path.join(root, 'home');
  engine = openStore({ home });
  const s = engine;
  model = s.models.add({
    name: 'MobileLLM-125M',
    source: 'downloaded',
    format: 'safetensors',
    path: '/models/125m',
    paramCount: 124_600_000,
    bytes: 250_000_000,
  });
  s.models.add({ name: 'tiny', source: 'imported', format: 'safetensors', path: '/models/tiny' });
  done = s.runs.create({ kind: 'finetune', modelId: model.id, config: { method: 'lora' } });
  s.runs.setStatus(done.id, 'running');
  s.metrics.append(done.id, [
    { step: 1, name: 'loss', value: 2.5 },
    { step: 2, name: 'loss', value: 2.25 },
  ]);
  s.runs.setStatus(done.id, 'completed');
  abandoned = s.runs.create({ kind: 'finetune', modelId: model.id });
  s.runs.setStatus(abandoned.id, 'running');
  ckpts = [];
  for (const step of [10, 20]) {
    ckpts.push(await s.checkpoints.writeAndRecord(abandoned.id, step, 'lora', (dir) => fs.writeFileSync(path.join(dir, 'adapter.bin'), `step ${step}`)));
  }
  orphan = path.join(homeLayout(home).checkpoints, String(abandoned.id), 'step-30');
  fs.mkdirSync(orphan);
  fs.writeFileSync(path.join(orphan, 'adapter.bin'), 'never recorded');
  const old = new Date(Date.now() - 3600_000);
  fs.utimesSync(orphan, old, old);
  // The run was left running by a process that is gone.
  const db = new Database(homeLayout(home).db);
  db.prepare('UPDATE runs SET pid = ? WHERE id = ?').run(spawnSync(process.execPath, ['-e', '']).pid, abandoned.id);
  db.close();
});

afterAll(() => {
  engine.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('mlw store commands', () => {
  it('list, show and dry-run gc with --json, and print aligned tables', async () => {
    const [models, modelsTable, runs, show, checkpoints, dry] = await Promise.all([
      mlw('models', '--json', '--home', home),
      mlw('--home', home, 'models'),
      mlw('runs', '--json', '--home', home),
      mlw('runs', 'show', String(done.id), '--json', '--home', home),
      mlw('checkpoints', String(abandoned.id), '--json', '--home', home),
      mlw('gc', '--dry-run', '--json', '--home', home),
    ]);

    expect((json(models) as Model[]).map((m) => m.name)).toEqual(['MobileLLM-125M', 'tiny']);

    const lines = modelsTable.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const col = lines[0].indexOf('SOURCE');
    expect(lines[1].slice(col).startsWith('downloaded')).toBe(true);
    expect(lines[2].slice(col).startsWith('imported')).toBe(true);
    expect(lines[1]).toContain('124.6M');

    const listed = json(runs) as (Run & { ownerAlive: boolean | null })[];
    expect(listed.map((r) => r.id)).toEqual([abandoned.id, done.id]);
    expect(listed[0]).toMatchObject({ status: 'running', ownerAlive: false });

    expect(json(show)).toMatchObject({
      run: { id: done.id, status: 'completed', config: { method: 'lora' } },
      metrics: { loss: { step: 2, value: 2.25 } },
      checkpoints: [],
      resumeFrom: null,
    });
    expect((json(checkpoints) as Checkpoint[]).map((c) => [c.step, c.sha256])).toEqual(ckpts.map((c) => [c.step, c.sha256]));

    expect(json(dry)).toMatchObject({ dryRun: true, orphans: [orphan], missingCheckpoints: [] });
    expect(fs.existsSync(orphan)).toBe(true);
    // readers wrote nothing: the abandoned run is still as it was left
    expect(engine.runs.get(abandoned.id).status).toBe('running');
  });

  it('report usage mistakes with status 2 and missing records with status 1, in one line', async () => {
    const [noRun, badId] = await Promise.all([mlw('runs', 'show', '999', '--home', home), mlw('checkpoints', 'abc', '--home', home)]);
    expect(noRun).toMatchObject({ code: 1, stdout: '', stderr: 'mlw: error: no run with id 999\n' });
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/^mlw: run: "abc" is not an id/);
  });

  it('gc reconciles, removes the orphan, and keeps what is recorded', async () => {
    const gc = json(await mlw('gc', '--json', '--home', home)) as { dryRun: boolean; orphans: string[] };
    expect(gc).toMatchObject({ dryRun: false, orphans: [orphan] });
    expect(fs.existsSync(orphan)).toBe(false);
    for (const c of ckpts) expect(fs.existsSync(c.path)).toBe(true);
    const show = json(await mlw('runs', 'show', String(abandoned.id), '--json', '--home', home));
    expect(show).toMatchObject({ run: { status: 'interrupted' }, resumeFrom: { step: 20 } });
  });

  it('gc interrupts a run whose process ended between queueing and starting it, so that it can be resumed', async () => {
    const queued = path.join(root, 'queued');
    const s = openStore({ home: queued });
    const run = s.runs.create({ kind: 'finetune', config: { method: 'lora' } });
    s.close();
    const db = new Database(homeLayout(queued).db);
    const creator = JSON.parse(db.prepare('SELECT queued_by FROM runs WHERE id = ?').pluck().get(run.id) as string);
    db.prepare('UPDATE runs SET queued_by = ? WHERE id = ?').run(JSON.stringify({ ...creator, pid: spawnSync(process.execPath, ['-e', '']).pid }), run.id);
    db.close();
    expect((json(await mlw('runs', '--json', '--home', queued)) as Run[]).map((r) => r.status)).toEqual(['queued']); // a reader changes nothing

    json(await mlw('gc', '--json', '--home', queued));
    const [after] = json(await mlw('runs', '--json', '--home', queued)) as Run[];
    expect(after).toMatchObject({ id: run.id, status: 'interrupted', error: 'its process ended before the run started' });
  });

  it('refuse a damaged database without touching it, and move it aside on request', async () => {
    const bad = path.join(root, 'bad');
    fs.mkdirSync(bad);
    const file = path.join(bad, 'workbench.db');
    fs.writeFileSync(file, 'not a database at all'.repeat(20));
    const before = sha(file);
    const refused = await mlw('runs', '--home', bad);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(file);
    expect(refused.stderr).toContain('--move-aside');
    expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(sha(file)).toBe(before);

    const moved = await mlw('models', '--move-aside', '--json', '--home', bad);
    expect(moved.code).toBe(0);
    expect(JSON.parse(moved.stdout)).toEqual([]);
    const aside = fs.readdirSync(bad).filter((n) => /^workbench\.db\.corrupt-[\dT-]+Z$/.test(n));
    expect(aside).toHaveLength(1);
    expect(sha(path.join(bad, aside[0]))).toBe(before);
  });

  it('move aside, on request, a database whose header is sound but whose pages are damaged', async () => {
    const damaged = path.join(root, 'damaged');
    const s = openStore({ home: damaged });
    const run = s.runs.create({ kind: 'pretrain' });
    s.metrics.append(
      run.id,
      Array.from({ length: 20_000 }, (_, i) => ({ step: i, name: 'loss', value: i / 7 })),
    );
    s.close();
    const file = homeLayout(damaged).db;
    const bytes = fs.readFileSync(file);
    const pageSize = bytes.readUInt16BE(16);
    bytes.fill(0xa5, 10 * pageSize, 14 * pageSize); // pages of the metrics, not the header or the schema
    fs.writeFileSync(file, bytes);
    const before = sha(file);
    const refused = await mlw('runs', '--home', damaged);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${file} is not a usable workbench database (database disk image is malformed)`);
    expect(refused.stderr).toContain('--move-aside');
    expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(sha(file)).toBe(before);

    // A reader: no reconcile reads the damaged pages on the way in, integrity_check does.
    const moved = await mlw('runs', '--move-aside', '--json', '--home', damaged);
    expect(moved.code, moved.stderr).toBe(0);
    expect(JSON.parse(moved.stdout)).toEqual([]);
    expect(moved.stderr).toMatch(new RegExp(`^mlw: moved the damaged ${file} to ${file}\\.corrupt-[\\dT-]+Z\n$`));
    const aside = fs.readdirSync(damaged).filter((n) => /^workbench\.db\.corrupt-[\dT-]+Z$/.test(n));
    expect(aside).toHaveLength(1);
    expect(sha(path.join(damaged, aside[0]))).toBe(before);
  });

  it('after a lost (0-byte) database: say so once, and gc --reregister records the model folders again', async () => {
    const lost = path.join(root, 'lost');
    openStore({ home: lost }).close();
    const layout = homeLayout(lost);
    const modelDir = tinyModelDir(layout.models);
    fs.mkdirSync(path.join(layout.models, 'not-a-model'));
    fs.mkdirSync(path.join(layout.checkpoints, '4'));
    fs.writeFileSync(layout.db, '');
    for (const side of ['-wal', '-shm']) fs.rmSync(layout.db + side, { force: true });

    const first = await mlw('models', '--json', '--home', lost);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual([]);
    expect(first.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(first.stderr).toContain(`${layout.db} was empty (0 bytes)`);
    expect(first.stderr).toContain('mlw gc --reregister');

    const found = json(await mlw('gc', '--reregister', '--json', '--home', lost)) as ReregisterReport;
    expect(found.registered.map((m) => [m.path, m.format, m.paramCount! > 0])).toEqual([[modelDir, 'safetensors', true]]);
    expect(found.skipped).toMatchObject([{ path: path.join(layout.models, 'not-a-model') }]);
    expect(found.unrecorded).toEqual([path.join(layout.checkpoints, '4')]);
    expect((json(await mlw('models', '--json', '--home', lost)) as Model[]).map((m) => m.path)).toEqual([modelDir]);
    expect((await mlw('gc', '--reregister', '--dry-run', '--home', lost)).code).toBe(2);
  });

  it('mlw models on a fresh home lists the bundled default model and its chat variant, as the app registers them at its first start', async () => {
    const { defaultModel: bundled, chatModel: chat } = bundledResources();
    expect(bundled).not.toBeNull();
    expect(chat).not.toBeNull();
    const fresh = path.join(root, 'fresh');
    const listed = json(await mlw('models', '--json', '--home', fresh)) as Model[];
    expect(listed.map((m) => [m.name, m.path]).sort()).toEqual(
      [
        [bundled!.name, bundled!.path],
        [chat!.name, chat!.path],
      ].sort(),
    );
    const base = listed.find((m) => m.path === bundled!.path)!;
    const variant = listed.find((m) => m.path === chat!.path)!;
    expect(base.paramCount).toBeGreaterThan(0);
    // The chat variant is a LoRA adapter of the default model.
    expect(variant).toMatchObject({ format: 'peft-lora', parentModelId: base.id });
    const table = await mlw('models', '--home', fresh);
    expect(table.stdout).toContain(bundled!.name);
    // The engine's own first start finds them there and adds nothing.
    const store = openStore({ home: fresh });
    expect(ensureDefaultModel(store)).toBeNull();
    expect(store.models.list()).toHaveLength(2);
    store.close();
  });

  it('refuse a database from a newer app, naming both versions', async () => {
    const newer = path.join(root, 'newer');
    openStore({ home: newer }).close();
    const db = new Database(homeLayout(newer).db);
    db.pragma('user_version = 7');
    db.close();
    const r = await mlw('models', '--home', newer);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`schema version 7, .* up to ${SCHEMA_VERSION}`));
  });
});
