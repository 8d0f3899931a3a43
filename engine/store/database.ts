// Opening workbench.db: refuse (without writing a byte) a file that is not a
// SQLite database or was written by a newer app, then set the pragmas and
// bring the schema up to date.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CorruptDatabaseError, NewerDatabaseError, UnwritableDatabaseError } from './errors';
import { SCHEMA_VERSION, migrate, userVersion } from './migrations';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/** Why the first 100 bytes are not a SQLite header, or null when they are (or the file is empty or absent). */
export function headerProblem(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const header = Buffer.alloc(100);
    const n = fs.readSync(fd, header, 0, 100, 0);
    // An empty file is a valid empty database (SQLite creates them that way).
    if (n === 0) return null;
    if (n < 100 || !header.subarray(0, 16).equals(SQLITE_MAGIC)) return 'not a SQLite database';
    const pageSize = header.readUInt16BE(16);
    const validPageSize = pageSize === 1 || (pageSize >= 512 && pageSize <= 32768 && (pageSize & (pageSize - 1)) === 0);
    if (!validPageSize || header[21] !== 64 || header[22] !== 32 || header[23] !== 32) return 'damaged SQLite header';
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether SQLite found the file damaged (or not a database at all). */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB');
}

/** Whether SQLite could not write the file: read-only (file, folder or file system) or not permitted. */
export function isUnwritable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    typeof code === 'string' && (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
  );
}

/**
 * Why a writer could not write the database or create its side files next to
 * it, or null. SQLite itself opens a write-protected file read-only without a
 * word and fails only at the first write, in the middle of some command.
 */
function writeProblem(file: string): string | null {
  for (const p of [file, path.dirname(file)]) {
    try {
      fs.accessSync(p, fs.constants.W_OK);
    } catch (err) {
      const { code } = err as NodeJS.ErrnoException;
      if (code === 'ENOENT') continue;
      return `${p === file ? 'the file' : 'its folder'} is not writable: ${code}`;
    }
  }
  return null;
}

export interface OpenOptions {
  readonly: boolean;
  /** Also run integrity_check (reads every page): damage the header and schema checks cannot see. */
  verify?: boolean;
}

/** integrity_check's first complaint, or null when the database is sound. */
function integrityProblem(db: Database.Database): string | null {
  const rows = db.pragma('integrity_check', { simple: false }) as { integrity_check: string }[];
  return rows[0]?.integrity_check === 'ok' ? null : `integrity_check: ${rows[0]?.integrity_check.split('\n')[0]}`;
}

/** Opens the database; a writer also sets the pragmas and migrates it. A reader needs the file to exist. */
export function openDatabase(file: string, { readonly, verify = false }: OpenOptions): Database.Database {
  const problem = headerProblem(file);
  if (problem) throw new CorruptDatabaseError(file, problem);
  const unwritable = readonly ? null : writeProblem(file);
  if (unwritable) throw new UnwritableDatabaseError(file, unwritable);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly, fileMustExist: readonly, timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    if (!readonly && isUnwritable(err)) throw new UnwritableDatabaseError(file, (err as Error).message, { cause: err });
    throw err;
  }
  try {
    // Read before anything writes: a damaged schema or a newer version must be
    // reported with the file exactly as it was found.
    const version = userVersion(db);
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    if (version > SCHEMA_VERSION) throw new NewerDatabaseError(file, version, SCHEMA_VERSION);
    const damage = verify ? integrityProblem(db) : null;
    if (damage) throw new CorruptDatabaseError(file, damage);
    // A reader may find an older schema; the caller migrates it through a writer.
    if (readonly) return db;
    // WAL: readers (a second CLI, the UI) never block the writer nor see half a transaction.
    db.pragma('journal_mode = WAL');
    // FULL: in WAL mode NORMAL may lose the last commits on power loss. A
    // checkpoint row or a run's status change must not be lost once the call
    // that made it returned: a trainer that deletes an older checkpoint after
    // recording a newer one relies on the newer row having reached the disk.
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    if (isCorruption(err)) throw new CorruptDatabaseError(file, (err as Error).message, { cause: err });
    if (!readonly && isUnwritable(err)) throw new UnwritableDatabaseError(file, (err as Error).message, { cause: err });
    throw err;
  }
}

/** SQLite's side files. A stale -wal next to a new database would be replayed into it. */
const SIDE_SUFFIXES = ['-journal', '-wal', '-shm'];

/**
 * Renames a damaged database (and its side files) to `<file>.corrupt-<time>`,
 * never deleting anything. Returns the new name of the database file.
 */
export function moveDatabaseAside(file: string, now = new Date()): string {
  const suffix = `.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
  // Side files first: if this is interrupted, the database is still where it
  // was rather than a fresh one being created next to the old -wal.
  for (const side of SIDE_SUFFIXES) {
    if (fs.existsSync(file + side)) fs.renameSync(file + side, file + suffix + side);
  }
  fs.renameSync(file, file + suffix);
  return file + suffix;
}
