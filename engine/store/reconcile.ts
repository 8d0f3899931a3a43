// Bringing the database and the files back in line after a crash: runs whose
// process is gone become interrupted, temporary leftovers of dead writers are
// removed, and files without rows (orphans) and rows without files (missing)
// are reported. gc removes orphans on request.
import fs from 'node:fs';
import path from 'node:path';
import { listTempLeftovers, tempOwnerPid } from '../io/atomic';
import { folderBytes } from './folder-digest';
import { isLocalPidAlive } from './liveness';
import type { Checkpoint, Run } from './records';
import type { Store } from './store';

/**
 * Unrecorded files younger than this are not orphans yet: a writer may be
 * between renaming a folder into place and inserting its row (hashing a big
 * checkpoint, or waiting for the database lock).
 */
export const ORPHAN_GRACE_MS = 10 * 60_000;

export interface ScanOptions {
  graceMs?: number;
  now?: number;
}

export interface InterruptedRun {
  run: Run;
  /** The checkpoint it can resume from, or null when it has none (it restarts from scratch). */
  resumeFrom: Checkpoint | null;
}

export interface MissingFile {
  kind: 'model' | 'dataset' | 'checkpoint';
  id: number;
  path: string;
}

export interface ReconcileReport {
  interrupted: InterruptedRun[];
  removedTemp: string[];
  /** Files and folders in the home that no row describes. */
  orphans: string[];
  /** Rows whose file or folder is gone. */
  missing: MissingFile[];
}

export interface GcReport {
  dryRun: boolean;
  tempLeftovers: string[];
  orphans: string[];
  /** Rows of checkpoints whose folder is gone (a checkpoint that cannot be loaded is forgotten). */
  missingCheckpoints: Checkpoint[];
  /** Bytes held by the temp leftovers and orphans. */
  bytes: number;
}

const isDir = (p: string): boolean => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;

const entries = (dir: string): string[] => (fs.existsSync(dir) && isDir(dir) ? fs.readdirSync(dir).map((n) => path.join(dir, n)) : []);

const isTemp = (p: string): boolean => tempOwnerPid(p) !== null;

function areas(store: Store): string[] {
  const { models, datasets, runs, checkpoints } = store.layout;
  return [models, datasets, runs, checkpoints];
}

/**
 * Temporary files and folders (see io/atomic.ts) whose writing process is
 * dead. Those of a live process are left alone: another process of the
 * workbench may be writing them right now.
 */
function deadTempLeftovers(store: Store): string[] {
  const dirs = [store.layout.root, ...areas(store)];
  for (const area of areas(store)) dirs.push(...entries(area).filter((p) => !isTemp(p) && isDir(p)));
  return dirs.flatMap(listTempLeftovers).filter((p) => !isLocalPidAlive(tempOwnerPid(p)!));
}

function findOrphans(store: Store, { graceMs = ORPHAN_GRACE_MS, now = Date.now() }: ScanOptions): string[] {
  const { layout } = store;
  // A path is in use when a row points at it or at something inside it.
  const inUse = new Set<string>();
  const recorded = [...store.models.list().map((m) => m.path), ...store.datasets.list().map((d) => d.path), ...store.checkpoints.list().map((c) => c.path)];
  for (const p of recorded) {
    for (let q = path.resolve(p); q !== path.dirname(q) && q !== layout.root; q = path.dirname(q)) inUse.add(q);
  }
  const runIds = store.runs.ids();
  const isRunFolder = (p: string): boolean => /^\d+$/.test(path.basename(p)) && runIds.has(Number(path.basename(p)));

  const candidates = [...entries(layout.models), ...entries(layout.datasets)];
  candidates.push(...entries(layout.runs).filter((p) => !isRunFolder(p)));
  for (const p of entries(layout.checkpoints)) {
    if (isRunFolder(p) && isDir(p)) candidates.push(...entries(p));
    else candidates.push(p);
  }
  return candidates.filter((p) => {
    if (isTemp(p) || inUse.has(p)) return false;
    const st = fs.lstatSync(p, { throwIfNoEntry: false }); // gone meanwhile: a writer renamed it
    return st !== undefined && st.mtimeMs <= now - graceMs;
  });
}

function findMissing(store: Store): MissingFile[] {
  return [
    ...store.models.list().map((m) => ({ kind: 'model' as const, id: m.id, path: m.path })),
    ...store.datasets.list().map((d) => ({ kind: 'dataset' as const, id: d.id, path: d.path })),
    ...store.checkpoints.list().map((c) => ({ kind: 'checkpoint' as const, id: c.id, path: c.path })),
  ].filter((f) => !fs.existsSync(f.path));
}

function bytesOf(p: string): number {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  return st.isDirectory() ? folderBytes(p) : st.size;
}

/** What a writer does when it opens the store. */
export function reconcile(store: Store, options: ScanOptions = {}): ReconcileReport {
  const interrupted = store.runs.interruptAbandoned().map((run) => ({ run, resumeFrom: store.checkpoints.resumePoint(run.id) }));
  const removedTemp = deadTempLeftovers(store);
  for (const p of removedTemp) fs.rmSync(p, { recursive: true, force: true });
  return { interrupted, removedTemp, orphans: findOrphans(store, options), missing: findMissing(store) };
}

/** Removes temp leftovers and orphans and forgets checkpoints whose folder is gone; with dryRun, only lists them. */
export function collectGarbage(store: Store, { dryRun = false, ...options }: ScanOptions & { dryRun?: boolean } = {}): GcReport {
  const tempLeftovers = deadTempLeftovers(store);
  const orphans = findOrphans(store, options);
  const missingCheckpoints = store.checkpoints.list().filter((c) => !fs.existsSync(c.path));
  const bytes = [...tempLeftovers, ...orphans].reduce((sum, p) => sum + bytesOf(p), 0);
  if (!dryRun) {
    for (const p of [...tempLeftovers, ...orphans]) fs.rmSync(p, { recursive: true, force: true });
    for (const c of missingCheckpoints) store.checkpoints.forget(c.id);
  }
  return { dryRun, tempLeftovers, orphans, missingCheckpoints, bytes };
}
