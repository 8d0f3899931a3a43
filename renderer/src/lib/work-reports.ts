// Quantization and conversion reports (what `quantize.start` and
// `convert.start` record) as the Runs page lists them: what was made from
// what, and the headline numbers. The bodies are checked by the schemas of the
// jobs that wrote them; one another version wrote is shown as unreadable.
import { JOB_RESULTS, type Report } from '../../../engine/protocol/protocol';
import { formatBytes } from './app.svelte';

export interface WorkSummary {
  /** e.g. "quantized (w4, group 32)", "shared (every-other)". */
  what: string;
  /** e.g. "4.1 MB → 1.2 MB · ppl 41.27 → 43.10". */
  result: string;
  /** The model it made, when recorded. */
  outputModelId: number | null;
}

const ppl = (p: { before: { ppl: number }; after: { ppl: number } } | null): string =>
  p ? `ppl ${p.before.ppl.toFixed(2)} → ${p.after.ppl.toFixed(2)}` : 'no perplexity measured';

export function workSummary(r: Report): WorkSummary {
  if (r.kind === 'quantization') {
    const q = JOB_RESULTS.quantize.shape.report.safeParse(r.body);
    if (!q.success) return { what: 'quantized', result: 'a report this version cannot read', outputModelId: null };
    const b = q.data;
    return {
      what: `quantized (${b.method})`,
      result: `${formatBytes(b.size.sourceBytes)} → ${formatBytes(b.size.quantizedBytes)} · ${ppl(b.perplexity)}`,
      outputModelId: b.output.modelId,
    };
  }
  const c = JOB_RESULTS.convert.shape.report.safeParse(r.body);
  if (!c.success) return { what: 'converted', result: 'a report this version cannot read', outputModelId: null };
  const b = c.data;
  return {
    what: b.operation === 'share' ? `shared (${b.pick ?? 'every-other'})` : 'unshared',
    result: `${b.source.numBlocks} → ${b.output.numBlocks} blocks · ${ppl(b.perplexity)}`,
    outputModelId: b.output.modelId,
  };
}
