// What the lab measured of each trained variant, kept beside the models so
// that a later lab run (or the Lab page) does not measure it again: one JSON
// file per measure (evaluations.json, latency.json, zero-shot.json), key
// ("<variant>-seed<N>[/<method>]") → record. A record stands only for what it
// was measured on (its run, and whatever else `current` checks); a file that is
// absent, damaged or of an older shape is measured again.
import fs from 'node:fs';
import type { z } from 'zod';
import { writeFileAtomic } from '../io/atomic';

export class Measurements<T> {
  private readonly records: Record<string, T>;

  constructor(
    readonly file: string,
    record: z.ZodType<T>,
  ) {
    this.records = Measurements.read(file, record);
  }

  private static read<T>(file: string, record: z.ZodType<T>): Record<string, T> {
    if (!fs.existsSync(file)) return {};
    try {
      const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
      if (typeof json !== 'object' || json === null || Array.isArray(json)) return {};
      const out: Record<string, T> = {};
      for (const [key, value] of Object.entries(json)) {
        const parsed = record.safeParse(value);
        if (parsed.success) out[key] = parsed.data;
      }
      return out;
    } catch {
      return {};
    }
  }

  /** The record of `key` when `current` accepts it, else measured by `measure` and written (null: nothing new is measured). */
  async get(key: string, current: (r: T) => boolean, measure: (() => Promise<T>) | null): Promise<T | null> {
    const cached = this.records[key];
    if (cached !== undefined && current(cached)) return cached;
    if (!measure) return null;
    this.records[key] = await measure();
    writeFileAtomic(this.file, JSON.stringify(this.records, null, 2) + '\n');
    return this.records[key];
  }
}
