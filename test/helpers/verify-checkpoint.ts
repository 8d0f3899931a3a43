// Whether a checkpoint's folder still holds what its row records: the folder
// re-hashed and compared with the recorded sha256 and size.
import fs from 'node:fs';
import { digestFolder } from '../../engine/store/folder-digest';
import type { Checkpoint } from '../../engine/store/records';

export async function verifyCheckpoint(c: Checkpoint): Promise<{ ok: boolean; sha256: string | null; bytes: number | null }> {
  if (!fs.existsSync(c.path)) return { ok: false, sha256: null, bytes: null };
  const d = await digestFolder(c.path);
  return { ok: d.sha256 === c.sha256 && d.bytes === c.bytes, sha256: d.sha256, bytes: d.bytes };
}
