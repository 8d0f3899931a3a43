// Where a pulled model folder came from: `.mlw-origin.json` beside its files,
// written once a pull is complete. An adapter trained on it names its base by
// this Hub id (train/lora.ts), which resolves on any other machine.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../io/atomic';

export const ORIGIN_FILE = '.mlw-origin.json';

export const HubOrigin = z.object({
  /** owner/name */
  repo: z.string(),
  /** Branch, tag or commit as asked for. */
  revision: z.string(),
  /** The commit every file was taken from. */
  commit: z.string(),
});
export type HubOrigin = z.infer<typeof HubOrigin>;

export function writeOrigin(dir: string, origin: HubOrigin): void {
  writeFileAtomic(path.join(dir, ORIGIN_FILE), JSON.stringify(origin, null, 2) + '\n');
}

/** The Hub repo `dir` was pulled from; null for a folder made here, or a marker that does not parse. */
export function readOrigin(dir: string): HubOrigin | null {
  const file = path.join(dir, ORIGIN_FILE);
  if (!fs.existsSync(file)) return null;
  try {
    return HubOrigin.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
  } catch {
    return null; // a damaged marker only loses the Hub name: the adapter then names its base by its folder
  }
}
