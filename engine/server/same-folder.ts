// Recognises a folder that is already in the store: another model whose
// folder has the same content digest (engine/store/folder-digest.ts). Only
// folders of the same total size are digested, so an import reads no other
// model's files unless their sizes match to the byte.
import fs from 'node:fs';
import path from 'node:path';
import type { Model } from '../store/records';
import { digestFolder, folderBytes } from '../store/folder-digest';

/** The first of `models` whose folder holds the same files, byte for byte, as `dir`; null when none does. */
export async function modelWithSameFolder(models: Model[], dir: string): Promise<Model | null> {
  const bytes = folderBytes(dir);
  const candidates = models.filter((m) => {
    try {
      return fs.statSync(m.path).isDirectory() && folderBytes(m.path) === bytes;
    } catch {
      return false; // its folder is gone or unreadable: not the same
    }
  });
  if (!candidates.length) return null;
  const digest = (await digestFolder(dir)).sha256;
  for (const m of candidates) {
    const theirs =
      path.resolve(m.path) === path.resolve(dir)
        ? digest
        : await digestFolder(m.path).then(
            (d) => d.sha256,
            () => null,
          );
    if (theirs === digest) return m;
  }
  return null;
}
