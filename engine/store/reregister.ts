// After a lost database (see open.ts): the model folders still in <home>/models
// are recorded again, so that a gc does not remove them as orphans. Datasets
// and checkpoints are only counted: a dataset's rows and a checkpoint's run
// are not in its files.
import fs from 'node:fs';
import path from 'node:path';
import { tempOwnerPid } from '../io/atomic';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { countParams } from '../model/config';
import { folderBytes } from './folder-digest';
import type { Model } from './records';
import type { Store } from './store';

export interface ReregisterReport {
  registered: Model[];
  /** Folders and files in models/ that are not usable model folders, with why. */
  skipped: { path: string; reason: string }[];
  /** Unrecorded entries left in datasets/ and checkpoints/ (not re-registered). */
  unrecorded: string[];
}

const unrecordedIn = (dir: string, recorded: Set<string>): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .map((n) => path.join(dir, n))
        .filter((p) => tempOwnerPid(p) === null && !recorded.has(p))
    : [];

export function reregisterModels(store: Store): ReregisterReport {
  const { layout } = store;
  const models = new Set(store.models.list().map((m) => path.resolve(m.path)));
  const registered: Model[] = [];
  const skipped: ReregisterReport['skipped'] = [];
  for (const dir of unrecordedIn(layout.models, models)) {
    try {
      const folder = readModelFolder(dir);
      const { format } = checkModelFolder(folder);
      registered.push(
        store.models.add({
          name: path.basename(dir),
          source: 'imported',
          format,
          path: dir,
          config: folder.configJson ?? undefined,
          paramCount: countParams(folder.config).total,
          bytes: folderBytes(dir),
        }),
      );
    } catch (err) {
      skipped.push({ path: dir, reason: (err as Error).message.split('\n')[0] });
    }
  }
  const datasets = new Set(store.datasets.list().map((d) => path.resolve(d.path)));
  const runs = new Set([...store.runs.ids()].map((id) => path.join(layout.checkpoints, String(id))));
  return { registered, skipped, unrecorded: [...unrecordedIn(layout.datasets, datasets), ...unrecordedIn(layout.checkpoints, runs)] };
}
