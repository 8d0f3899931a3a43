// Parsing and printing shared by the CLI commands.
import { UsageError } from './errors';

/** Sizes in the unit the app and the reports use too. */
export { formatBytes, formatGigabytes } from '../protocol/sizes';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

export function parseIdList(s: string, flag: string): number[] {
  const parts = s
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length);
  if (!parts.length) throw new UsageError(`${flag}: no token ids given`);
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`${flag}: "${p}" is not a token id (non-negative integer)`);
    return Number(p);
  });
}

export function parseNumber(s: string, flag: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: "${s}" is not a number`);
  if (opts.integer && !Number.isInteger(n)) throw new UsageError(`${flag}: "${s}" is not an integer`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag}: ${n} is below the minimum ${opts.min}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`${flag}: ${n} is above the maximum ${opts.max}`);
  return n;
}
