// Where an export may write: a new or empty folder, or an earlier export
// (marked by the record every export leaves), which it replaces whole.
import fs from 'node:fs';

/** Written into every export folder. */
export const EXPORT_RECORD = 'mlw-export.json';

/** Refuses an `outDir` that holds something other than an earlier export (an export replaces its folder whole). */
export function checkExportTarget(outDir: string): void {
  if (!fs.existsSync(outDir)) return;
  if (!fs.statSync(outDir).isDirectory()) throw new Error(`${outDir}: exists and is not a folder`);
  const entries = fs.readdirSync(outDir);
  if (entries.length && !entries.includes(EXPORT_RECORD)) {
    throw new Error(`${outDir}: not empty and not an earlier export (no ${EXPORT_RECORD}); choose a new or empty folder`);
  }
}
