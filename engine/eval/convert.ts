// Benchmark exports → the tasks JSONL of tasks.ts, with the prompts of
// lm-evaluation-harness's task configs (so the numbers are comparable to the
// harness's). The inputs are the rows of the Hugging Face datasets, one JSON
// object per line, as `datasets` writes them with `to_json()`:
//
//   arc         allenai/ai2_arc (ARC-Easy / ARC-Challenge)
//               {"question","choices":{"text":[…],"label":["A",…]},"answerKey":"B"}
//               → context "Question: {question}\nAnswer:", choices = choices.text,
//                 gold = the index of answerKey among the labels
//   piqa        ybisk/piqa   {"goal","sol1","sol2","label":0|1}
//               → context "Question: {goal}\nAnswer:", choices [sol1, sol2]
//   hellaswag   Rowan/hellaswag   {"activity_label","ctx_a","ctx_b","endings":[…],"label":"2"}
//               → context preprocess("{activity_label}: {ctx_a} {Ctx_b}"), choices
//                 preprocess(ending) (the harness's preprocess drops WikiHow's
//                 "[title]"-style artifacts; ctx_b is capitalized as Python does)
//   winogrande  allenai/winogrande   {"sentence","option1","option2","answer":"1"|"2"}
//               → partial evaluation: contexts = the sentence up to the blank "_"
//                 with each option filled in, continuation = the rest after the blank
//   boolq       super_glue/boolq {"passage","question","label":0|1}
//               or google/boolq {"passage","question","answer":true|false}
//               → context "{passage}\nQuestion: {question}?\nAnswer:", choices ["no","yes"]
//
// Test splits without labels (label "" or -1) are refused: there is nothing to score against.
import { z } from 'zod';
import type { SharedContextRow, SharedContinuationRow, TaskRow } from './tasks';

export const CONVERT_FORMATS = ['arc', 'piqa', 'hellaswag', 'winogrande', 'boolq'] as const;
export type ConvertFormat = (typeof CONVERT_FORMATS)[number];

const Arc = z.object({
  id: z.string().optional(),
  question: z.string(),
  choices: z.object({ text: z.array(z.string()).min(2), label: z.array(z.string()).min(2) }),
  answerKey: z.string(),
});

const Piqa = z.object({ goal: z.string(), sol1: z.string(), sol2: z.string(), label: z.union([z.literal(0), z.literal(1)]) });

const Hellaswag = z.object({
  ind: z.number().optional(),
  activity_label: z.string(),
  ctx_a: z.string(),
  ctx_b: z.string(),
  endings: z.array(z.string()).min(2),
  label: z.string().regex(/^\d+$/, 'no label (a test split?)'),
});

const Winogrande = z.object({
  sentence: z.string().includes('_', { message: 'has no blank "_"' }),
  option1: z.string(),
  option2: z.string(),
  answer: z.enum(['1', '2'], { message: 'answer must be "1" or "2" (a test split?)' }),
});

const Boolq = z
  .object({
    idx: z.number().optional(),
    passage: z.string(),
    question: z.string(),
    label: z.union([z.literal(0), z.literal(1)]).optional(),
    answer: z.boolean().optional(),
  })
  .refine((r) => r.label !== undefined || r.answer !== undefined, { message: 'needs "label" (0 or 1) or "answer" (true or false)' });

/** Python's str.capitalize(): the first character upper case, the rest lower case. */
const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1).toLowerCase();

/** The harness's hellaswag preprocess(). */
export function hellaswagPreprocess(text: string): string {
  return text
    .trim()
    .replaceAll(' [title]', '. ')
    .replace(/\[.*?\]/g, '')
    .replaceAll('  ', ' ');
}

const shared = (task: string, context: string, choices: string[], gold: number, id?: string | number): SharedContextRow => ({
  task,
  ...(id === undefined ? {} : { id }),
  context,
  choices,
  gold,
});

/** `row` as `schema` says, or an error in one line naming the first problem. */
function parse<T>(schema: z.ZodType<T>, row: unknown): T {
  const r = schema.safeParse(row);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new Error(`${issue.path.length ? `"${issue.path.join('.')}": ` : ''}${issue.message}`);
}

/** One dataset row → one tasks row; throws a one-line error when the row is not of `format`. */
export function convertRow(format: ConvertFormat, row: unknown, task: string): TaskRow {
  switch (format) {
    case 'arc': {
      const r = parse(Arc, row);
      const gold = r.choices.label.indexOf(r.answerKey);
      if (gold < 0) throw new Error(`answerKey "${r.answerKey}" is not one of the labels ${r.choices.label.join(', ')}`);
      return shared(task, `Question: ${r.question}\nAnswer:`, r.choices.text, gold, r.id);
    }
    case 'piqa': {
      const r = parse(Piqa, row);
      return shared(task, `Question: ${r.goal}\nAnswer:`, [r.sol1, r.sol2], r.label);
    }
    case 'hellaswag': {
      const r = parse(Hellaswag, row);
      const context = hellaswagPreprocess(`${r.activity_label}: ${r.ctx_a} ${capitalize(r.ctx_b)}`);
      const gold = Number(r.label);
      if (gold >= r.endings.length) throw new Error(`label ${gold} is not the index of an ending`);
      return shared(task, context, r.endings.map(hellaswagPreprocess), gold, r.ind);
    }
    case 'winogrande': {
      const r = parse(Winogrande, row);
      const blank = r.sentence.indexOf('_');
      return {
        task,
        contexts: [r.option1, r.option2].map((o) => r.sentence.slice(0, blank) + o),
        continuation: r.sentence.slice(blank + 1).trim(),
        gold: Number(r.answer) - 1,
      } satisfies SharedContinuationRow;
    }
    case 'boolq': {
      const r = parse(Boolq, row);
      const gold = r.label ?? (r.answer ? 1 : 0);
      return shared(task, `${r.passage}\nQuestion: ${r.question}?\nAnswer:`, ['no', 'yes'], gold, r.idx);
    }
  }
}

/** A JSONL export → tasks rows; errors name `source` and the line. Blank lines are skipped. */
export function convertJsonl(format: ConvertFormat, text: string, task: string, source: string): TaskRow[] {
  const rows: TaskRow[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${source}:${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
    }
    try {
      rows.push(convertRow(format, json, task));
    } catch (e) {
      throw new Error(`${where}: not a ${format} row: ${(e as Error).message}`, { cause: e });
    }
  });
  if (!rows.length) throw new Error(`${source}: no rows`);
  return rows;
}
