// Evaluation reports (engine/eval/report.ts) as the UI shows them: what was
// measured on, and the headline number.
import type { EvalReport, Report } from '../../../engine/protocol/protocol';

const fileName = (p: string): string => p.split(/[\\/]/).pop() ?? p;

export interface EvalSummary {
  data: string;
  /** The headline, e.g. "ppl 41.27" or "acc 31.0% · acc_norm 33.5%". */
  result: string;
  /** For sorting and charts: perplexity, or length-normalised accuracy. */
  value: number;
  runtime: string;
}

export function evalSummary(r: Report): EvalSummary {
  // An evaluation report's body is the EvalReport the engine recorded (engine/eval/record.ts).
  const b = r.body as unknown as EvalReport;
  if (b.type === 'perplexity') {
    return { data: `${fileName(b.text.path)} (${b.tokens} tokens)`, result: `ppl ${b.ppl.toFixed(2)}`, value: b.ppl, runtime: b.runtime.name };
  }
  const o = b.overall;
  return {
    data: `${fileName(b.tasksFile.path)} (${o.items} items)`,
    result: `acc ${(100 * o.acc).toFixed(1)}% · acc_norm ${(100 * o.accNorm).toFixed(1)}%`,
    value: o.accNorm,
    runtime: b.runtime.name,
  };
}
