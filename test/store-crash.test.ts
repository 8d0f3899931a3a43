// SIGKILL a writer at random moments, many times, and check after every kill
// that the store is sound: the database opens and passes integrity_check,
// every recorded checkpoint has the recorded sha256, every metric batch is
// whole or absent, and the killed run is found interrupted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { listTempLeftovers } from '../engine/io/atomic';
import { homeLayout } from '../engine/store/home';
import { openStore } from '../engine/store/open';
import { BATCH_STEPS, METRICS, metricValue } from './helpers/store-crash-plan';
import { verifyCheckpoint } from './helpers/verify-checkpoint';

const WRITER = path.join(import.meta.dirname, 'helpers', 'store-crash-writer.ts');
/**
 * Two homes killed in turn side by side: a writer's start-up through tsx
 * (~0.7 s, ~1 s of CPU) is most of the wall time, so two lanes keep two cores
 * busy — about 35 s in all on an idle 2-core machine.
 */
const LANES = 2;
const KILLS_PER_LANE = 25;
/** After the writer reports that it writes, it is killed within this many ms. */
const MAX_KILL_DELAY_MS = 120;

type Phase = 'metrics' | 'checkpoint' | 'removal' | 'between';

const homes: string[] = [];
afterAll(() => {
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
});

/** Starts a writer, kills it at a random moment once it writes, and says what it was doing. */
function writeAndKill(home: string): Promise<Phase> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, home], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!timer && out.includes('ready\n')) {
        timer = setTimeout(() => child.kill('SIGKILL'), Math.random() * MAX_KILL_DELAY_MS);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    // 'exit' comes after the child was reaped: its pid is really gone when the store is reopened.
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer ended by itself (code ${code}): ${err || out}`));
      const marker = out.at(-1);
      resolve(marker === 'M' ? 'metrics' : marker === 'C' ? 'checkpoint' : marker === 'R' ? 'removal' : 'between');
    });
  });
}

async function checkAfterKill(home: string): Promise<void> {
  const layout = homeLayout(home);
  // The file as the dead writer left it (opening replays the WAL, as any reader would).
  const db = new Database(layout.db, { readonly: true });
  expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  db.close();

  const store = openStore({ home });
  try {
    expect(store.integrityCheck()).toEqual(['ok']);
    const [run] = store.runs.list();
    expect(store.reconcileReport!.interrupted.map((i) => i.run.id)).toEqual([run.id]);
    expect(store.runs.get(run.id).status).toBe('interrupted');

    for (const c of store.checkpoints.list(run.id)) {
      expect(await verifyCheckpoint(store.checkpoints.get(c.id)), `checkpoint at step ${c.step}`).toMatchObject({ ok: true });
    }
    const runDir = path.join(layout.checkpoints, String(run.id));
    expect(listTempLeftovers(runDir)).toEqual([]);

    // Every batch is whole (BATCH_STEPS steps of each metric, with the planned values) or absent.
    for (const name of METRICS) {
      const curve = store.metrics.curve(run.id, name);
      expect(curve.steps.length % BATCH_STEPS, `${name}: rows of a partial batch`).toBe(0);
      curve.steps.forEach((step, i) => {
        if (step !== i || curve.values[i] !== metricValue(name, step)) {
          throw new Error(`${name}: row ${i} is step ${step} = ${curve.values[i]}, expected step ${i} = ${metricValue(name, i)}`);
        }
      });
    }
    const counts = METRICS.map((name) => store.metrics.curve(run.id, name).steps.length);
    expect(new Set(counts).size, 'every metric of a batch commits together').toBe(1);
  } finally {
    store.close();
  }
}

async function lane(): Promise<Phase[]> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-crash-'));
  homes.push(home);
  const phases: Phase[] = [];
  for (let i = 0; i < KILLS_PER_LANE; i++) {
    phases.push(await writeAndKill(home));
    await checkAfterKill(home);
  }
  return phases;
}

describe('store under SIGKILL', () => {
  // The timeout leaves room for a machine shared with other work; the test itself aims at well under a minute.
  it(`survives ${LANES * KILLS_PER_LANE} kills during metric inserts and checkpoint writes`, { timeout: 300_000 }, async () => {
    const phases = (await Promise.all(Array.from({ length: LANES }, lane))).flat();
    expect(phases).toHaveLength(LANES * KILLS_PER_LANE);
    // The kills did land inside the operations under test, not only between them.
    const count = (p: Phase) => phases.filter((x) => x === p).length;
    expect(count('metrics')).toBeGreaterThan(0);
    expect(count('checkpoint')).toBeGreaterThan(0);
  });
});
