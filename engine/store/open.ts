// Opening the store: the home folder is created if needed, the database is
// checked and migrated, and a writer reconciles it with the files on disk.
import fs from 'node:fs';
import { openDatabase } from './database';
import { createHomeFolders, homeLayout, resolveHome } from './home';
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
}

function openWriter(home: string): Store {
  const layout = homeLayout(home);
  createHomeFolders(layout);
  return new Store(openDatabase(layout.db, { readonly: false }), layout);
}

export function openStore({ home, readonly = false }: OpenStoreOptions = {}): Store {
  const root = resolveHome(home);
  if (!readonly) {
    const store = openWriter(root);
    try {
      store.reconcileReport = reconcile(store);
    } catch (err) {
      store.close();
      throw err;
    }
    return store;
  }
  const layout = homeLayout(root);
  if (!fs.existsSync(layout.db)) openWriter(root).close();
  let db = openDatabase(layout.db, { readonly: true });
  if (userVersion(db) < SCHEMA_VERSION) {
    db.close();
    openWriter(root).close();
    db = openDatabase(layout.db, { readonly: true });
  }
  return new Store(db, layout);
}
