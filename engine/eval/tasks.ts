// Zero-shot multiple-choice tasks: the JSONL file `mlw eval --tasks` reads,
// one item per line, scored the way lm-evaluation-harness scores its
// `multiple_choice` tasks.
//
// Three shapes of line:
//
// 1. One context, several answers (ARC, PIQA, HellaSwag, BoolQ, …):
//      {"task":"arc_easy","context":"Question: Which gas do plants take in?\nAnswer:",
//       "choices":["oxygen","carbon dioxide","helium"],"gold":1}
//    Choice i is scored as log p(delimiter + choices[i] | context), summed over
//    its tokens. `delimiter` is optional and defaults to " ", the harness's
//    target_delimiter, so `context` and `choices` are exactly what the
//    harness's doc_to_text and doc_to_choice give.
//
// 2. Several contexts, one shared continuation (WinoGrande, "partial
//    evaluation"): the option fills the blank in the context and what is
//    scored is the rest of the sentence after the blank:
//      {"task":"winogrande","contexts":["The trophy didn't fit in the suitcase because the trophy",
//       "The trophy didn't fit in the suitcase because the suitcase"],"continuation":"was too big.","gold":0}
//    Choice i is scored as log p(delimiter + continuation | contexts[i]).
//
// 3. Token ids, for a model without a tokenizer or a pre-tokenized export:
//      {"task":"copy","context_ids":[1,306,4966],"choices_ids":[[263],[278,1880]],"gold":0}
//    Choice i is scored as log p(choices_ids[i] | context_ids), ids as given.
//
// Every line may carry an "id" (string or number), kept for reference.
// "task" may be left out: the items then belong to a task named after the
// file ("my-set.jsonl" → my-set). The harness's own names for the keys of a
// processed document are taken too: "query" for "context" (HellaSwag's and
// ARC's doc["query"]) and "label" for "gold"; a line that gives both names of
// one key is refused.
//
// Metrics, per task and over all items:
//   acc       the choice with the highest summed log-likelihood is `gold`
//   acc_norm  the same after dividing each sum by the choice's length in
//             characters (Unicode code points: Python's len(), which the
//             harness uses on doc_to_choice's strings — the answer text
//             without the delimiter; for shape 2 the harness's choices are
//             the contexts). For token-id lines there is no text: the length
//             is the number of tokens.
// Both with their standard error, sqrt(sample variance / n), as the harness
// reports it.
//
// Tokenization follows the harness's _encode_pair: trailing whitespace of the
// context moves to the start of the continuation; the context is encoded
// alone and together with the continuation, and the continuation's tokens are
// what the joint encoding has beyond the context's length. An empty context
// becomes the BOS token. Without --bos no BOS is added in front of contexts
// (the harness's default for Hugging Face models, add_bos_token=False).
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Tokenizer } from '../tokenizer/tokenizer';

const taskName = z.string().min(1);
const gold = z.number().int().min(0);
const itemId = z.union([z.string(), z.number()]).optional();
const tokenId = z.number().int().min(0);

const SharedContextRow = z
  .strictObject({ task: taskName, id: itemId, context: z.string(), choices: z.array(z.string()).min(2), gold, delimiter: z.string().optional() })
  .refine((r) => r.gold < r.choices.length, { message: 'gold is not the index of a choice', path: ['gold'] });

const SharedContinuationRow = z
  .strictObject({ task: taskName, id: itemId, contexts: z.array(z.string()).min(2), continuation: z.string().min(1), gold, delimiter: z.string().optional() })
  .refine((r) => r.gold < r.contexts.length, { message: 'gold is not the index of a context', path: ['gold'] });

const TokenIdRow = z
  .strictObject({ task: taskName, id: itemId, context_ids: z.array(tokenId).min(1), choices_ids: z.array(z.array(tokenId).min(1)).min(2), gold })
  .refine((r) => r.gold < r.choices_ids.length, { message: 'gold is not the index of a choice', path: ['gold'] });

export type SharedContextRow = z.infer<typeof SharedContextRow>;
export type SharedContinuationRow = z.infer<typeof SharedContinuationRow>;
export type TokenIdRow = z.infer<typeof TokenIdRow>;
export type TaskRow = SharedContextRow | SharedContinuationRow | TokenIdRow;

/** Which of the three shapes a line claims to be (by its keys), so errors speak about that shape. */
function schemaFor(row: unknown): z.ZodType<TaskRow> {
  const o = typeof row === 'object' && row !== null ? row : {};
  if ('context_ids' in o || 'choices_ids' in o) return TokenIdRow;
  if ('contexts' in o || 'continuation' in o) return SharedContinuationRow;
  return SharedContextRow;
}

/** The harness's key names, as ours. */
const ALIASES: [ours: string, harness: string][] = [
  ['context', 'query'],
  ['gold', 'label'],
];

/** The line with the harness's names renamed to ours and the default task filled in. */
function normalizeRow(json: unknown, defaultTask: string | undefined, where: string): unknown {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return json;
  const row: Record<string, unknown> = { ...json };
  for (const [ours, harness] of ALIASES) {
    if (!(harness in row)) continue;
    if (ours in row) throw new Error(`${where}: give "${ours}" or "${harness}", not both`);
    row[ours] = row[harness];
    delete row[harness];
  }
  if (!('task' in row) && defaultTask !== undefined) row.task = defaultTask;
  return row;
}

/** Parses one line of a tasks file; errors name `where` (file:line). `defaultTask` names the task of a line without one. */
export function parseTaskRow(line: string, where: string, defaultTask?: string): TaskRow {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
  const json = normalizeRow(raw, defaultTask, where);
  const parsed = schemaFor(json).safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${where}: ${issue.path.length ? `"${issue.path.join('.')}": ` : ''}${issue.message}`);
  }
  return parsed.data;
}

export interface TaskLine {
  row: TaskRow;
  /** 1-based line number in the file. */
  line: number;
}

/** The items of a tasks file, with their line numbers (blank lines skipped). */
export function readTasks(file: string): TaskLine[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const defaultTask = path.basename(file).replace(/\.jsonl?$/, '');
  const out: TaskLine[] = [];
  lines.forEach((text, i) => {
    if (text.trim()) out.push({ row: parseTaskRow(text, `${file}:${i + 1}`, defaultTask), line: i + 1 });
  });
  if (!out.length) throw new Error(`${file}: no items`);
  return out;
}

/** The first `limit` items of each task, in file order (the harness's --limit). */
export function limitPerTask(items: TaskLine[], limit: number): TaskLine[] {
  const seen = new Map<string, number>();
  return items.filter(({ row }) => {
    const n = (seen.get(row.task) ?? 0) + 1;
    seen.set(row.task, n);
    return n <= limit;
  });
}

/** One choice as token ids: what the model reads, what it is scored on, and acc_norm's length. */
export interface EncodedChoice {
  context: number[];
  continuation: number[];
  normLength: number;
}

/** Python's len(): Unicode code points. */
const codePoints = (s: string): number => Array.from(s).length;

/** The harness's _encode_pair: the continuation's tokens are those the joint encoding has beyond the context's. */
export function encodePair(tok: Tokenizer, context: string, continuation: string, bos: boolean): { context: number[]; continuation: number[] } {
  const kept = context.trimEnd();
  const cont = context.slice(kept.length) + continuation;
  if (kept === '') return { context: [tok.bosId], continuation: tok.encode(cont) };
  const contextIds = tok.encode(kept, { bos });
  const whole = tok.encode(kept + cont, { bos });
  return { context: contextIds, continuation: whole.slice(contextIds.length) };
}

/**
 * The choices of one item as token ids. `tok` is needed for text lines;
 * `where` (file:line) names the item in errors.
 */
export function encodeItem(row: TaskRow, tok: Tokenizer | null, bos: boolean, where: string): EncodedChoice[] {
  let choices: EncodedChoice[];
  if ('context_ids' in row) {
    choices = row.choices_ids.map((ids) => ({ context: row.context_ids, continuation: ids, normLength: ids.length }));
  } else {
    if (!tok) throw new Error(`${where}: a text item needs the model's tokenizer`);
    const delimiter = row.delimiter ?? ' ';
    choices =
      'contexts' in row
        ? row.contexts.map((c) => ({ ...encodePair(tok, c, delimiter + row.continuation, bos), normLength: codePoints(c) }))
        : row.choices.map((c) => ({ ...encodePair(tok, row.context, delimiter + c, bos), normLength: codePoints(c) }));
  }
  choices.forEach((c, i) => {
    if (!c.continuation.length) throw new Error(`${where}: choice ${i} adds no tokens to its context`);
  });
  return choices;
}
