// Opening the store: the home folder is created if needed, the database is
// checked and migrated, and a writer reconciles it with the files on disk.
import fs from 'node:fs';
import path from 'node:path';
import { tempOwnerPid } from '../io/atomic';
import { isCorruption, isUnwritable, openDatabase } from './database';
import { CorruptDatabaseError, UnwritableDatabaseError } from './errors';
import { createHomeFolders, homeLayout, resolveHome, type HomeLayout } from './home';
import { SCHEMA_VERSION, userVersion } from './migrations';
import { reconcile } from './reconcile';
import { Store } from './store';

export interface OpenStoreOptions {
  /** The home folder; default: MLW_HOME, then the platform's app-data folder. */
  home?: string;
  /**
   * A reader (a CLI listing runs while the engine works) never writes — except
   * to create or migrate the database when it is missing or older.
   */
  readonly?: boolean;
  /** Run SQLite's integrity_check first: damaged pages are a CorruptDatabaseError even where the header and schema are fine. */
  verify?: boolean;
  /** Where a one-line notice goes (a database started anew next to the files of a lost one); default: stderr. */
  notify?: (line: string) => void;
}

const notifyStderr = (line: string): void => void process.stderr.write(`mlw: ${line}\n`);

/** How many entries (temporary ones aside) each area of the home holds. */
function leftOnDisk(layout: HomeLayout): { models: number; datasets: number; checkpoints: number } {
  const count = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => tempOwnerPid(path.join(dir, n)) === null).length : 0);
  return { models: count(layout.models), datasets: count(layout.datasets), checkpoints: count(layout.checkpoints) };
}

/**
 * A database that was missing or empty (0 bytes) is started anew; if the home
 * still holds models, datasets or checkpoints, the old database was lost, and
 * the user hears of it once (the new file is no longer empty) with the way to
 * list the models again — before a plain gc, which would remove them as orphans.
 */
function lostDatabaseNotice(store: Store, before: number | undefined): string | null {
  if (before !== undefined && before > 0) return null;
  if (store.models.list().length || store.runs.ids().size || store.datasets.list().length) return null;
  const left = leftOnDisk(store.layout);
  if (!left.models && !left.datasets && !left.checkpoints) return null;
  const held = Object.entries(left)
    .filter(([, n]) => n > 0)
    .map(([area, n]) => `${n} in ${area}/`)
    .join(', ');
  return (
    `${store.layout.db} was ${before === undefined ? 'missing' : 'empty (0 bytes)'}, so a new database was started, ` +
    `but ${store.layout.root} still holds ${held}; run "mlw gc --reregister" to list its models again (a plain "mlw gc" would remove them as orphans)`
  );
}

function openWriter(home: string, notify: (line: string) => void, verify = false): Store {
  const layout = homeLayout(home);
  const before = fs.statSync(layout.db, { throwIfNoEntry: false })?.size;
  createHomeFolders(layout);
  const store = new Store(openDatabase(layout.db, { readonly: false, verify }), layout);
  try {
    const notice = lostDatabaseNotice(store, before);
    if (notice) notify(notice);
  } catch (err) {
    store.close();
    throw err;
  }
  return store;
}

export function openStore({ home, readonly = false, verify = false, notify = notifyStderr }: OpenStoreOptions = {}): Store {
  const root = resolveHome(home);
  if (!readonly) {
    const store = openWriter(root, notify, verify);
    try {
      store.reconcileReport = reconcile(store);
    } catch (err) {
      store.close();
      // Damaged pages the header check could not see, met while reconciling.
      if (isCorruption(err)) throw new CorruptDatabaseError(store.layout.db, (err as Error).message, { cause: err });
      if (isUnwritable(err)) throw new UnwritableDatabaseError(store.layout.db, (err as Error).message, { cause: err });
      throw err;
    }
    return store;
  }
  const layout = homeLayout(root);
  if (!fs.existsSync(layout.db)) openWriter(root, notify).close();
  let db = openDatabase(layout.db, { readonly: true, verify });
  if (userVersion(db) < SCHEMA_VERSION) {
    db.close();
    openWriter(root, notify).close();
    db = openDatabase(layout.db, { readonly: true, verify });
  }
  return new Store(db, layout);
}
