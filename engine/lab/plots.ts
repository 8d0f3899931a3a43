// The plots a researcher draws of a lab result, as SVG text: the Lab page
// shows them (lab.result) and the report writes them (lab.report), so both
// show the same picture. Which plots depend on what the result holds:
//   - held-out perplexity vs depth, when the variants hold parameters equal
//     and differ in depth (depth vs width);
//   - held-out perplexity per variant otherwise, with the spread over seeds;
//   - training loss vs step of every variant, mean over seeds (a moving
//     average: single steps are noisy) — per sharing strategy in layer sharing;
//   - the perplexity rise of each quantization method per variant.
// Plain SVG 1.1 with inline styles: it opens in a browser, an editor or a paper.
import type { MetricCurve } from '../store/records';
import type { LabPlot } from './result';
import type { LabResult, Stat, VariantRow } from './run';

const W = 640;
const H = 360;
const M = { top: 40, right: 150, bottom: 48, left: 64 };
const PALETTE = ['#3b5bdb', '#e8590c', '#2b8a3e', '#ae3ec9', '#c92a2a', '#1098ad', '#f59f00', '#495057'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (x: number) =>
  Number.isInteger(x) || Math.abs(x) >= 100
    ? x.toFixed(0)
    : Math.abs(x) >= 10
      ? x.toFixed(1)
      : x
          .toPrecision(3)
          .replace(/(\.\d*?)0+$/, '$1')
          .replace(/\.$/, '');

/** About `target` 1-2-5 spaced ticks covering [lo, hi]. */
function ticks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

/** [lo, hi] with a margin, ticks inside. */
function range(values: number[], zero = false): [number, number] {
  let lo = Math.min(...values, ...(zero ? [0] : []));
  let hi = Math.max(...values, ...(zero ? [0] : []));
  if (lo === hi) [lo, hi] = [lo - Math.abs(lo || 1) * 0.1, hi + Math.abs(hi || 1) * 0.1];
  const pad = (hi - lo) * 0.08;
  return [zero && lo >= 0 ? 0 : lo - pad, hi + pad];
}

interface Axes {
  title: string;
  xLabel: string;
  yLabel: string;
  x: [number, number];
  y: [number, number];
  /** Category names instead of numeric x ticks. */
  xCategories?: string[];
  /** Ticks where the data lie, for an axis drawn on a transformed scale. */
  xTicks?: { at: number; label: string }[];
}

function frame(a: Axes, body: string[], legend: { label: string; color: string }[]): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sy = (v: number) => M.top + ph - ((v - a.y[0]) / (a.y[1] - a.y[0])) * ph;
  const sx = (v: number) => M.left + ((v - a.x[0]) / (a.x[1] - a.x[0])) * pw;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.left}" y="22" font-size="14" font-weight="600">${esc(a.title)}</text>`,
  ];
  for (const t of ticks(a.y[0], a.y[1])) {
    if (t < a.y[0] || t > a.y[1]) continue;
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e9ecef"/>`);
    out.push(`<text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" fill="#495057">${num(t)}</text>`);
  }
  if (a.xCategories) {
    a.xCategories.forEach((c, i) => out.push(`<text x="${sx(i + 0.5)}" y="${M.top + ph + 18}" text-anchor="middle" fill="#495057">${esc(c)}</text>`));
  } else {
    const xt = a.xTicks ?? ticks(a.x[0], a.x[1], 6).map((t) => ({ at: t, label: num(t) }));
    for (const t of xt) {
      if (t.at < a.x[0] || t.at > a.x[1]) continue;
      out.push(`<line x1="${sx(t.at)}" x2="${sx(t.at)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#868e96"/>`);
      out.push(`<text x="${sx(t.at)}" y="${M.top + ph + 18}" text-anchor="middle" fill="#495057">${esc(t.label)}</text>`);
    }
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#868e96"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(a.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(a.yLabel)}</text>`);
  out.push(...body);
  legend.forEach((l, i) => {
    const y = M.top + 8 + i * 18;
    out.push(`<rect x="${W - M.right + 14}" y="${y - 8}" width="12" height="10" fill="${l.color}"/>`);
    out.push(`<text x="${W - M.right + 32}" y="${y + 1}">${esc(l.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Scales of a frame, for the marks inside it. */
function scales(a: Axes) {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  return {
    sx: (v: number) => M.left + ((v - a.x[0]) / (a.x[1] - a.x[0])) * pw,
    sy: (v: number) => M.top + ph - ((v - a.y[0]) / (a.y[1] - a.y[0])) * ph,
    pw,
  };
}

const color = (i: number) => PALETTE[i % PALETTE.length];

/** Held-out perplexity against effective depth (a log scale: depths double), ± spread over seeds, each point named. */
function pplVsDepth(rows: { row: VariantRow; ppl: Stat }[], holdEqual: string): LabPlot {
  const sorted = [...rows].sort((a, b) => a.row.depth - b.row.depth);
  const depths = [...new Set(sorted.map((r) => r.row.depth))];
  const a: Axes = {
    title: `Held-out perplexity vs depth (${holdEqual} held equal)`,
    xLabel: 'effective depth (layers, log scale)',
    yLabel: 'held-out perplexity',
    x: range(depths.map(Math.log2)),
    y: range(sorted.flatMap((r) => [r.ppl.mean - r.ppl.spread, r.ppl.mean + r.ppl.spread])),
    xTicks: depths.map((d) => ({ at: Math.log2(d), label: String(d) })),
  };
  const { sx, sy } = scales(a);
  const path = sorted.map((r, i) => `${i ? 'L' : 'M'}${sx(Math.log2(r.row.depth))} ${sy(r.ppl.mean)}`).join(' ');
  const body = [`<path d="${path}" fill="none" stroke="${color(0)}" stroke-width="2"/>`];
  for (const r of sorted) {
    const [x, y] = [sx(Math.log2(r.row.depth)), sy(r.ppl.mean)];
    if (r.ppl.spread > 0)
      body.push(`<line x1="${x}" x2="${x}" y1="${sy(r.ppl.mean - r.ppl.spread)}" y2="${sy(r.ppl.mean + r.ppl.spread)}" stroke="${color(0)}"/>`);
    body.push(`<circle cx="${x}" cy="${y}" r="4" fill="${color(0)}"/>`);
    body.push(`<text x="${x + 6}" y="${y - 8}" fill="#212529">${esc(r.row.name)} ${num(r.ppl.mean)}</text>`);
  }
  return { name: 'ppl-vs-depth', title: a.title, svg: frame(a, body, []) };
}

/** Bars in groups: one group per category, one bar per series; whiskers for spreads. */
function groupedBars(
  name: string,
  title: string,
  yLabel: string,
  categories: string[],
  series: { label: string; values: (number | null)[]; spreads?: number[] }[],
): LabPlot {
  const values = series.flatMap((s) => s.values.map((v, i) => (v === null ? [] : [v + (s.spreads?.[i] ?? 0)])).flat());
  const a: Axes = { title, xLabel: '', yLabel, x: [0, categories.length], y: range(values, true), xCategories: categories };
  const { sx, sy } = scales(a);
  const slot = (sx(1) - sx(0)) * 0.8;
  const bw = slot / series.length;
  const body: string[] = [];
  series.forEach((s, j) =>
    s.values.forEach((v, i) => {
      if (v === null) return;
      const x = sx(i) + (sx(1) - sx(0)) * 0.1 + j * bw;
      const [top, base] = [sy(Math.max(v, 0)), sy(Math.min(v, 0))];
      body.push(
        `<rect x="${x}" y="${top}" width="${bw - 2}" height="${Math.max(base - top, 1)}" fill="${color(j)}"><title>${esc(`${s.label}: ${num(v)}`)}</title></rect>`,
      );
      const sp = s.spreads?.[i] ?? 0;
      if (sp > 0) body.push(`<line x1="${x + bw / 2 - 1}" x2="${x + bw / 2 - 1}" y1="${sy(v - sp)}" y2="${sy(v + sp)}" stroke="#212529"/>`);
    }),
  );
  return { name, title, svg: frame(a, body, series.length > 1 ? series.map((s, j) => ({ label: s.label, color: color(j) })) : []) };
}

/** The mean over seeds of each step's value, then a centred moving average of `window` steps. */
function meanCurve(curves: MetricCurve[], window: number): { x: number[]; y: number[] } {
  const sums = new Map<number, { s: number; n: number }>();
  for (const c of curves)
    c.steps.forEach((step, i) => {
      const e = sums.get(step) ?? { s: 0, n: 0 };
      sums.set(step, { s: e.s + c.values[i], n: e.n + 1 });
    });
  const x = [...sums.keys()].sort((a, b) => a - b);
  const raw = x.map((s) => sums.get(s)!.s / sums.get(s)!.n);
  const half = Math.floor(window / 2);
  const y = raw.map((_, i) => {
    const part = raw.slice(Math.max(0, i - half), i + half + 1);
    return part.reduce((a, b) => a + b, 0) / part.length;
  });
  return { x, y };
}

function lossVsStep(rows: VariantRow[], lossOf: (runId: number) => MetricCurve | null, steps: number): LabPlot | null {
  const window = Math.max(1, Math.round(steps / 40));
  const lines = rows
    .map((row, i) => ({
      row,
      i,
      c: meanCurve(
        row.runs.map((r) => lossOf(r.runId)).filter((c): c is MetricCurve => !!c && c.steps.length > 0),
        window,
      ),
    }))
    .filter((l) => l.c.x.length > 1);
  if (!lines.length) return null;
  const a: Axes = {
    title: 'Training loss vs step',
    xLabel: 'step',
    yLabel: window > 1 ? `training loss (mean of ${window} steps)` : 'training loss',
    x: [0, Math.max(steps, ...lines.map((l) => l.c.x.at(-1)!))],
    y: range(lines.flatMap((l) => l.c.y)),
  };
  const { sx, sy } = scales(a);
  const body = lines.map(
    (l) =>
      `<path d="${l.c.x.map((x, k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)} ${sy(l.c.y[k]).toFixed(1)}`).join(' ')}" fill="none" stroke="${color(l.i)}" stroke-width="1.5"/>`,
  );
  return {
    name: 'loss-vs-step',
    title: a.title,
    svg: frame(
      a,
      body,
      lines.map((l) => ({ label: l.row.name, color: color(l.i) })),
    ),
  };
}

/** The plots of a result; `lossOf` gives a run's training loss curve. */
export function labPlots(r: LabResult, lossOf: (runId: number) => MetricCurve | null): LabPlot[] {
  const plots: LabPlot[] = [];
  const withPpl = r.rows.flatMap((row) => (row.ppl ? [{ row, ppl: row.ppl }] : []));
  const depths = new Set(withPpl.map((x) => x.row.depth));
  if (r.holdEqual === 'parameters' && depths.size > 1 && withPpl.length > 1) plots.push(pplVsDepth(withPpl, r.holdEqual));
  else if (withPpl.length)
    plots.push(
      groupedBars(
        'ppl-per-variant',
        'Held-out perplexity per variant',
        'held-out perplexity',
        r.rows.map((row) => row.name),
        [{ label: 'perplexity', values: r.rows.map((row) => row.ppl?.mean ?? null), spreads: r.rows.map((row) => row.ppl?.spread ?? 0) }],
      ),
    );
  const loss = lossVsStep(r.rows, lossOf, r.budget.steps);
  if (loss) plots.push(loss);
  const methods = [...new Set(r.rows.flatMap((row) => Object.keys(row.quantized)))] as (keyof VariantRow['quantized'])[];
  if (methods.length)
    plots.push(
      groupedBars(
        'quantization-rise',
        'Perplexity rise from quantization (%)',
        'rise over the float model (%)',
        methods,
        r.rows.map((row) => ({ label: row.name, values: methods.map((m) => (row.quantized[m] ? row.quantized[m].rise * 100 : null)) })),
      ),
    );
  return plots;
}
