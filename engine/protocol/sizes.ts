// Sizes as people read them, the same in the app, the CLI and the reports:
// decimal units (1 MB = 1,000,000 bytes), as the Hugging Face Hub and file
// managers show them.

const UNITS = ['KB', 'MB', 'GB', 'TB'] as const;

/** "812 B", "4.1 MB", "125 MB", "1.6 GB". */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1000) return `${n} B`;
  let v = n / 1000;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(Math.abs(v) < 100 ? 1 : 0)} ${UNITS[u]}`;
}

/** Gigabytes with two decimals, for memory budgets: "3.21 GB". */
export function formatGigabytes(n: number): string {
  return `${(n / 1e9).toFixed(2)} GB`;
}
