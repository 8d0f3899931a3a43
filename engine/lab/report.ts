// A lab result for people: the table (one column per metric the rows carry,
// mean ± spread over seeds), the paper's claim beside what was measured, and
// the report folder (Markdown + the SVG plots of engine/lab/plots.ts). The CLI
// prints the Markdown, the Lab page shows the same table, lab.report writes the folder.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic';
import type { LabPlot, LabTable } from './result';
import type { LabResult, Stat } from './run';

/** Row keys that are not metrics (or are shown their own way: quantized copies get a column per method). */
const NOT_METRICS = new Set(['name', 'label', 'params', 'depth', 'runs', 'quantized']);
const LABELS: Record<string, string> = { valLoss: 'val loss', ppl: 'held-out ppl' };
const label = (key: string) => LABELS[key] ?? key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();

const isStat = (v: unknown): v is Stat => typeof v === 'object' && v !== null && 'mean' in v && 'spread' in v && 'n' in v;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function number(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  return x.toFixed(Math.abs(x) < 10 ? 3 : 2);
}

/** A measured value: mean ± spread when there are several seeds. */
export function formatStat(s: Stat): string {
  const digits = Math.abs(s.mean) < 10 ? 3 : 2;
  return s.n > 1 ? `${s.mean.toFixed(digits)} ± ${s.spread.toFixed(digits)}` : s.mean.toFixed(digits);
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (isStat(v)) return formatStat(v);
  if (typeof v === 'number') return number(v);
  if (typeof v === 'string' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** The metric columns of the rows: every key some row has a value for (a plain object's fields each get one), in first-seen order. */
function metricColumns(rows: Record<string, unknown>[]): { key: string; get: (row: Record<string, unknown>) => unknown }[] {
  const cols = new Map<string, (row: Record<string, unknown>) => unknown>();
  for (const row of rows)
    for (const [key, v] of Object.entries(row)) {
      if (NOT_METRICS.has(key) || Array.isArray(v)) continue;
      if (isRecord(v) && !isStat(v)) {
        for (const sub of Object.keys(v)) {
          const get = (r: Record<string, unknown>) => (isRecord(r[key]) ? r[key][sub] : undefined);
          if (!cols.has(`${key}.${sub}`)) cols.set(`${key}.${sub}`, get);
        }
      } else if (!cols.has(key)) cols.set(key, (r) => r[key]);
    }
  // A metric no row has a value for was not measured here (an older run, a runtime that does not load): no column.
  return [...cols].map(([key, get]) => ({ key, get })).filter((c) => rows.some((r) => c.get(r) !== null && c.get(r) !== undefined));
}

/** The result table as text cells: variant, what, parameters, depth, every metric, then each quantization method's perplexity and rise. */
export function labTable(r: LabResult): LabTable {
  const rows = r.rows as unknown as Record<string, unknown>[];
  const metrics = metricColumns(rows);
  const methods = [...new Set(r.rows.flatMap((row) => Object.keys(row.quantized)))] as (keyof LabResult['rows'][number]['quantized'])[];
  const columns = [
    { key: 'name', label: 'variant' },
    { key: 'label', label: 'what' },
    { key: 'params', label: 'params' },
    { key: 'depth', label: 'depth' },
    ...metrics.map((m) => ({ key: m.key, label: m.key.split('.').map(label).join(' · ') })),
    ...methods.map((m) => ({ key: `quantized.${m}`, label: `${m} ppl (rise)` })),
  ];
  return {
    columns,
    rows: r.rows.map((row, i) => [
      row.name,
      row.label,
      `${(row.params / 1e6).toFixed(3)}M`,
      String(row.depth),
      ...metrics.map((m) => cell(m.get(rows[i]))),
      ...methods.map((m) => {
        const q = row.quantized[m];
        return q ? `${formatStat(q.ppl)} (${q.rise >= 0 ? '+' : ''}${(q.rise * 100).toFixed(2)}%)` : '—';
      }),
    ]),
  };
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The result as Markdown: the table, then the paper's claim and whether this run agrees; plots as images beside it when given. */
export function labResultToMarkdown(r: LabResult, plots: { file: string; title: string }[] = []): string {
  const t = labTable(r);
  const lines = [
    `# ${r.experiment} (${r.scale})`,
    '',
    r.question,
    '',
    `${r.budget.steps} steps × ${r.budget.tokensPerStep} tokens, seeds ${r.budget.seeds.join(', ')}, ${r.budget.corpus.join(' + ')}; held equal: ${r.holdEqual}${r.complete ? '' : ' — INCOMPLETE: run it again to resume'}`,
    '',
    `| ${t.columns.map((c) => c.label).join(' | ')} |`,
    `| ${t.columns.map(() => '---').join(' | ')} |`,
    ...t.rows.map((row) => `| ${row.map(mdCell).join(' | ')} |`),
    '',
    `**Paper says** (${r.paper.source}): ${r.paper.says}`,
    '',
    '| paper says | we measured | agrees? |',
    '| --- | --- | --- |',
    ...r.claims.map((c) => `| ${mdCell(c.text)} | ${mdCell(c.measured)} | ${c.agrees} |`),
    '',
    ...plots.flatMap((p) => [`![${p.title}](${p.file})`, '']),
  ];
  return lines.join('\n');
}

/** Writes report.md and one SVG per plot into `dir` (created); returns the files written. */
export function writeLabReport(dir: string, r: LabResult, plots: LabPlot[]): { dir: string; markdown: string; plots: string[] } {
  fs.mkdirSync(dir, { recursive: true });
  const files = plots.map((p) => {
    const file = path.join(dir, `${p.name}.svg`);
    writeFileAtomic(file, p.svg + '\n');
    return file;
  });
  const markdown = path.join(dir, 'report.md');
  writeFileAtomic(
    markdown,
    labResultToMarkdown(
      r,
      plots.map((p, i) => ({ file: path.basename(files[i]), title: p.title })),
    ),
  );
  return { dir, markdown, plots: files };
}
