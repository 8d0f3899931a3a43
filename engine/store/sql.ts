// How the repositories of the Store speak to SQLite: one statement cache,
// IMMEDIATE write transactions, paths stored relative to the home, and
// foreign-key failures turned into errors that say what was wrong.
import type Database from 'better-sqlite3';
import { NotFoundError, StoreError } from './errors';
import { fromStoredPath, toStoredPath, type HomeLayout } from './home';

type Statement = Database.Statement<unknown[], unknown>;

/** Statement cache, transactions and path mapping shared by the repositories. */
export class Sql {
  private readonly statements = new Map<string, Statement>();

  constructor(
    readonly db: Database.Database,
    readonly layout: HomeLayout,
  ) {}

  q(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** The row of `table` with this id; a NotFoundError naming `what` (e.g. "run") when there is none. */
  byId<R>(table: string, what: string, id: number): R {
    const row = this.q(`SELECT * FROM ${table} WHERE id = ?`).get(id) as R | undefined;
    if (!row) throw new NotFoundError(what, id);
    return row;
  }

  /**
   * Write transactions start IMMEDIATE: a deferred one that reads first and
   * then writes cannot wait for the lock (SQLite fails it with SQLITE_BUSY at
   * once when another connection wrote meanwhile), while BEGIN IMMEDIATE waits
   * up to the busy timeout.
   */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  stored(absolute: string): string {
    return toStoredPath(this.layout.root, absolute);
  }

  absolute(stored: string): string {
    return fromStoredPath(this.layout.root, stored);
  }
}

function isForeignKeyFailure(err: unknown): boolean {
  // A dangling reference fails with SQLITE_CONSTRAINT_FOREIGNKEY, an ON DELETE RESTRICT with SQLITE_CONSTRAINT_TRIGGER.
  const { code, message } = err as { code?: unknown; message?: unknown };
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT') && message === 'FOREIGN KEY constraint failed';
}

/** Runs `fn`, turning a foreign-key failure into a StoreError that says what was wrong. */
export function withForeignKeys<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isForeignKeyFailure(err)) throw new StoreError(what);
    throw err;
  }
}

export const json = (value: unknown): string => JSON.stringify(value);

/** The fields of a patch that are set (an explicit `undefined` leaves a field as it is). */
export function definedFields<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}
