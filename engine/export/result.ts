// What every export (engine/export/*) hands back.

/** The folder an export wrote, its files (relative to it) and one line per thing the user should know. */
export interface ExportResult {
  outDir: string;
  files: string[];
  notes: string[];
}
