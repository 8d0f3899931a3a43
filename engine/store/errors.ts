// Errors the store raises on purpose. Each message is one line that names the
// file or record concerned, so the CLI and the UI can show it as it is; the
// ones a request can run into carry their kind (engine/errors.ts).
import type { ErrorKind } from '../errors';

export class StoreError extends Error {
  override name = 'StoreError';
}

/** The database file is not SQLite or is damaged. It has not been modified. */
export class CorruptDatabaseError extends StoreError {
  override name = 'CorruptDatabaseError';
  constructor(
    readonly file: string,
    readonly detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `${file} is not a usable workbench database (${detail}); it was left untouched — ` +
        'move it aside with --move-aside (e.g. "mlw gc --move-aside") to start a new one',
      options,
    );
  }
}

/** The database (or its folder) cannot be written: a read-only file, folder or file system. */
export class UnwritableDatabaseError extends StoreError {
  override name = 'UnwritableDatabaseError';
  constructor(
    readonly file: string,
    readonly detail: string,
    options?: ErrorOptions,
  ) {
    super(`${file} cannot be written (${detail}); make it and its folder writable, ` + 'or choose another home with --home or MLW_HOME', options);
  }
}

/** The database was written by a newer version of the app. It has not been modified. */
export class NewerDatabaseError extends StoreError {
  override name = 'NewerDatabaseError';
  constructor(
    readonly file: string,
    readonly found: number,
    readonly supported: number,
  ) {
    super(
      `${file} has schema version ${found}, but this MobileLLM Workbench only knows versions up to ${supported}; ` +
        'update the app (the file was left untouched)',
    );
  }
}

export class NotFoundError extends StoreError {
  override name = 'NotFoundError';
  readonly kind: ErrorKind = 'not_found';
  constructor(what: string, id: number) {
    super(`no ${what} with id ${id}`);
  }
}

export class InvalidTransitionError extends StoreError {
  override name = 'InvalidTransitionError';
  readonly kind: ErrorKind = 'conflict';
  constructor(runId: number, from: string, to: string) {
    super(`run ${runId} cannot go from ${from} to ${to}`);
  }
}

/** A run that a live process is running: it cannot be removed under it. */
export class RunBusyError extends StoreError {
  override name = 'RunBusyError';
  readonly kind: ErrorKind = 'busy';
  constructor(runId: number, pid: number | undefined) {
    super(`run ${runId} is running (pid ${pid})`);
  }
}

/** A JSON column holds something its schema rejects (written by hand or by another version). */
export class BadRecordError extends StoreError {
  override name = 'BadRecordError';
  constructor(table: string, id: number, column: string, detail: string) {
    super(`${table} ${id}: column ${column} is invalid (${detail})`);
  }
}
