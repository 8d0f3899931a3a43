// Fine-tuning data: a JSONL file whose rows have one of four shapes, or a .txt.
//
//   chat        {"messages": [{"role": "system"|"user"|"assistant", "content": …}, …]}
//               rendered with the model's chat template; must end with the assistant
//   alpaca      {"instruction": …, "input": … (optional), "output": …}
//               a two-turn chat: user = instruction (+ "\n\n" + input), assistant = output
//   completion  {"prompt": …, "completion": …}
//               raw text: <s> prompt completion </s>, no template
//   text        {"text": …}   raw text: <s> text </s>
//   .txt        one text example per paragraph (blank-line separated)
//
// The file is UTF-8, a byte order mark before the first row allowed; a line
// that is not UTF-8 is an issue (never read as U+FFFD). Validation reads every
// row and collects one-line, line-numbered issues; the loss covers the answers
// (assistant turns, alpaca output, completion) unless lossOn is 'all'. Rows
// longer than maxSeqLen are cut at maxSeqLen.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { z } from 'zod';
import { KindedError, printable } from '../errors';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { ROLES, type ChatMessage, type ChatTemplate } from '../chat/template';
import type { TokenizedExample } from './batching';
import { RNG, permutation, rngFor } from './rng';

export const ROW_FORMATS = ['chat', 'alpaca', 'completion', 'text'] as const;
export type RowFormat = (typeof ROW_FORMATS)[number];

export type Row =
  | { line: number; format: 'chat'; messages: ChatMessage[] }
  | { line: number; format: 'alpaca'; instruction: string; input: string; output: string }
  | { line: number; format: 'completion'; prompt: string; completion: string }
  | { line: number; format: 'text'; text: string };

export interface DatasetIssue {
  line: number;
  message: string;
}

export interface ParsedDataset {
  file: string;
  sha256: string;
  /** The rows' shape; 'mixed' when rows differ, 'txt' for a text file. */
  format: RowFormat | 'mixed' | 'txt';
  rows: Row[];
  issues: DatasetIssue[];
}

const nonEmpty = z.string().refine((s) => s.trim().length > 0, 'is empty');

const ChatRow = z.object({
  messages: z.array(z.object({ role: z.enum(ROLES), content: nonEmpty })).min(1, 'has no messages'),
});
const AlpacaRow = z.object({ instruction: nonEmpty, input: z.string().default(''), output: nonEmpty });
const CompletionRow = z.object({ prompt: nonEmpty, completion: nonEmpty });
const TextRow = z.object({ text: nonEmpty });

/** `"messages[2].role" must be one of …` from zod's first issue. */
function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  const where = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${String(p)}` : String(p))).join('');
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return `missing "${where}"`;
  if (issue.code === 'invalid_value') return `"${where}" must be one of ${ROLES.join(', ')}`;
  return `"${where}" ${issue.message.replace(/^Invalid input: /, '')}`;
}

/** `"a", "b" and 3 more`: the first few keys, each shortened (a row's keys are the user's, of any number and length). */
function describeKeys(keys: string[], shown = 8, chars = 40): string {
  if (!keys.length) return 'none';
  const named = keys.slice(0, shown).map((k) => `"${k.length > chars ? `${k.slice(0, chars)}…` : k}"`);
  return named.join(', ') + (keys.length > shown ? ` and ${keys.length - shown} more` : '');
}

/** One JSON value → a row, or the reason it is not one. */
function parseRow(value: unknown, line: number): Row | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const keys = Object.keys(value);
  const has = (k: string) => keys.includes(k);
  const check = <T>(schema: z.ZodType<T>): T | string => {
    const r = schema.safeParse(value);
    return r.success ? r.data : describeIssue(r.error);
  };
  if (has('messages')) {
    const r = check(ChatRow);
    if (typeof r === 'string') return r;
    const roles = r.messages.map((m) => m.role);
    const late = roles.indexOf('system', 1);
    if (late > 0) return `"messages[${late}]" is a system message after the start`;
    if (roles[roles.length - 1] !== 'assistant') return 'conversation does not end with an assistant message';
    return { line, format: 'chat', messages: r.messages };
  }
  if (has('instruction') || has('output')) {
    const r = check(AlpacaRow);
    return typeof r === 'string' ? r : { line, format: 'alpaca', ...r };
  }
  if (has('prompt') || has('completion')) {
    const r = check(CompletionRow);
    return typeof r === 'string' ? r : { line, format: 'completion', ...r };
  }
  if (has('text')) {
    const r = check(TextRow);
    return typeof r === 'string' ? r : { line, format: 'text', text: r.text };
  }
  return `unknown row shape (keys: ${describeKeys(keys)}); expected "messages", "instruction"/"output", "prompt"/"completion" or "text"`;
}

const UTF8_BOM = [0xef, 0xbb, 0xbf];
const isUtf16 = (b: Buffer) => b.length >= 2 && ((b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff));

/**
 * The file's lines (split at \n or \r\n), the BOM before the first dropped, and
 * the indices of those that are not UTF-8 (empty in `lines`). \n never occurs
 * inside a multi-byte UTF-8 character, so lines can be cut as bytes.
 */
function decodeLines(bytes: Buffer): { lines: string[]; invalid: Set<number> } {
  const body = UTF8_BOM.every((b, i) => bytes[i] === b) ? bytes.subarray(UTF8_BOM.length) : bytes;
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    return { lines: strict.decode(body).split(/\r?\n/), invalid: new Set() };
  } catch {
    // Not UTF-8 somewhere: find the lines.
  }
  const lines: string[] = [];
  const invalid = new Set<number>();
  for (let start = 0; start <= body.length;) {
    const nl = body.indexOf(0x0a, start);
    const end = nl < 0 ? body.length : nl;
    try {
      lines.push(strict.decode(body.subarray(start, end)).replace(/\r$/, ''));
    } catch {
      invalid.add(lines.length);
      lines.push('');
    }
    start = end + 1;
  }
  return { lines, invalid };
}

/** Reads and validates a .jsonl (or .json lines) or .txt dataset. Never throws for bad rows: they become issues. */
export function parseDataset(file: string): ParsedDataset {
  if (!fs.existsSync(file)) throw new KindedError('not_found', `${file}: dataset file not found`);
  const bytes = fs.readFileSync(file);
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  const txt = path.extname(file).toLowerCase() === '.txt';
  if (isUtf16(bytes))
    return { file, sha256, format: txt ? 'txt' : 'mixed', rows: [], issues: [{ line: 1, message: 'the file is UTF-16 text; save it as UTF-8' }] };
  const { lines, invalid } = decodeLines(bytes);
  const rows: Row[] = [];
  const issues: DatasetIssue[] = [];
  const notUtf8 = (i: number) => issues.push({ line: i + 1, message: 'not valid UTF-8 (is the file in another encoding? save it as UTF-8)' });
  if (txt) {
    invalid.forEach(notUtf8);
    let start = -1;
    const flush = (end: number) => {
      if (start >= 0) rows.push({ line: start + 1, format: 'text', text: lines.slice(start, end).join('\n') });
      start = -1;
    };
    lines.forEach((l, i) => (l.trim() ? start < 0 && (start = i) : flush(i)));
    flush(lines.length);
    if (!rows.length) issues.push({ line: 1, message: 'no text' });
    return { file, sha256, format: 'txt', rows, issues };
  }
  lines.forEach((text, i) => {
    if (invalid.has(i)) return notUtf8(i);
    if (!text.trim()) return; // blank lines are allowed
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      issues.push({ line: i + 1, message: `not valid JSON (${(e as Error).message.split('\n')[0]})` });
      return;
    }
    const row = parseRow(value, i + 1);
    if (typeof row === 'string') issues.push({ line: i + 1, message: row });
    else rows.push(row);
  });
  if (!rows.length && !issues.length) issues.push({ line: 1, message: 'no rows' });
  const formats = new Set(rows.map((r) => r.format));
  const format = formats.size === 1 ? [...formats][0] : 'mixed';
  return { file, sha256, format, rows, issues };
}

/** "file:line: message" for each issue (at most `limit`, then a count), printable: messages quote the data. */
export function formatIssues(d: ParsedDataset, limit = 20): string[] {
  const out = d.issues.slice(0, limit).map((i) => printable(`${d.file}:${i.line}: ${i.message}`));
  if (d.issues.length > limit) out.push(`… and ${d.issues.length - limit} more`);
  return out;
}

// ---------------------------------------------------------------- rendering and tokenizing

/** A run of text or one special token, and whether the loss covers it. */
export type Segment = { text: string; learn: boolean } | { token: number; learn: boolean };

export interface RenderOptions {
  template: ChatTemplate;
  /** 'answers' (default): loss on the assistant turns / output / completion only; 'all': every token. */
  lossOn: 'answers' | 'all';
}

/** Special tokens a rendered chat template may contain as text, by text. */
function specialTokens(tok: Tokenizer, t: ChatTemplate): Map<string, number> {
  const out = new Map<string, number>();
  for (const [text, id] of [
    [t.bosToken, tok.bosId],
    [t.eosToken, tok.eosId],
  ] as const) {
    if (text && id >= 0) out.set(text, id);
  }
  return out;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Chat-template output → segments: split at the answers' edges and at special-token text. */
function chatSegments(tok: Tokenizer, t: ChatTemplate, messages: ChatMessage[]): Segment[] {
  const { text, answers } = t.renderWithAnswers(messages);
  const specials = specialTokens(tok, t);
  const edges = new Set<number>([0, text.length, ...answers.flat()]);
  const splitter = specials.size ? new RegExp([...specials.keys()].map(escapeRegExp).join('|'), 'g') : null;
  const found: { at: number; end: number; token: number }[] = [];
  for (const m of splitter ? text.matchAll(splitter) : []) {
    found.push({ at: m.index!, end: m.index! + m[0].length, token: specials.get(m[0])! });
    edges.add(m.index!).add(m.index! + m[0].length);
  }
  const inAnswer = (pos: number) => answers.some(([a, b]) => pos >= a && pos < b);
  const sorted = [...edges].sort((a, b) => a - b);
  const out: Segment[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const [a, b] = [sorted[i], sorted[i + 1]];
    const special = found.find((f) => f.at === a);
    if (special) out.push({ token: special.token, learn: inAnswer(a) });
    else if (!found.some((f) => a > f.at && a < f.end)) out.push({ text: text.slice(a, b), learn: inAnswer(a) });
  }
  return out;
}

/** The segments of a row, before the lossOn choice. */
export function rowSegments(row: Row, tok: Tokenizer, template: ChatTemplate): Segment[] {
  const bos: Segment[] = tok.bosId >= 0 ? [{ token: tok.bosId, learn: false }] : [];
  const eos: Segment[] = tok.eosId >= 0 ? [{ token: tok.eosId, learn: true }] : [];
  switch (row.format) {
    case 'chat':
      return chatSegments(tok, template, row.messages);
    case 'alpaca': {
      const user = row.input.trim() ? `${row.instruction}\n\n${row.input}` : row.instruction;
      return chatSegments(tok, template, [
        { role: 'user', content: user },
        { role: 'assistant', content: row.output },
      ]);
    }
    case 'completion':
      return [...bos, { text: row.prompt, learn: false }, { text: row.completion, learn: true }, ...eos];
    case 'text':
      return [...bos, { text: row.text, learn: true }, ...eos];
  }
}

function commonPrefix(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * Segments → token ids and per-token loss flags. Adjacent text segments are
 * encoded together (encoding them apart would add a word-start space at every
 * seam); a token belongs to the segment where the prefix encoding up to the
 * seam stops agreeing with the whole, so a token straddling a seam goes to the later segment.
 */
export function tokenizeSegments(tok: Tokenizer, segments: Segment[]): TokenizedExample {
  const ids: number[] = [];
  const learn: number[] = [];
  for (let i = 0; i < segments.length;) {
    const s = segments[i];
    if ('token' in s) {
      ids.push(s.token);
      learn.push(s.learn ? 1 : 0);
      i++;
      continue;
    }
    const run: { text: string; learn: boolean }[] = [];
    for (; i < segments.length && 'text' in segments[i]; i++) run.push(segments[i] as { text: string; learn: boolean });
    const whole = run.map((r) => r.text).join('');
    const full = tok.encode(whole);
    let done = 0;
    let chars = 0;
    run.forEach((r, k) => {
      chars += r.text.length;
      const upTo = k === run.length - 1 ? full.length : commonPrefix(tok.encode(whole.slice(0, chars)), full);
      for (; done < upTo; done++) {
        ids.push(full[done]);
        learn.push(r.learn ? 1 : 0);
      }
    });
  }
  return { ids, learn: Uint8Array.from(learn) };
}

const longestPieces = new WeakMap<Tokenizer, number>();

/** Characters of the longest piece of the vocabulary: no token covers more characters of text. */
function longestPiece(tok: Tokenizer): number {
  let n = longestPieces.get(tok);
  if (n === undefined) {
    n = 1;
    for (let id = 0; id < tok.vocabSize; id++) n = Math.max(n, tok.idToPiece(id).length);
    longestPieces.set(tok, n);
  }
  return n;
}

/** The segments with their text cut after `chars` characters in all (special tokens before the cut stay). */
function cutSegments(segments: Segment[], chars: number): { segments: Segment[]; cut: boolean } {
  const out: Segment[] = [];
  let left = chars;
  for (const s of segments) {
    if ('token' in s || s.text.length <= left) {
      out.push(s);
      if ('text' in s) left -= s.text.length;
      continue;
    }
    const code = s.text.charCodeAt(left - 1);
    const end = code >= 0xd800 && code < 0xdc00 ? left - 1 : left; // not between the halves of a surrogate pair
    if (end > 0) out.push({ text: s.text.slice(0, end), learn: s.learn });
    return { segments: out, cut: true };
  }
  return { segments: out, cut: false };
}

/** The row with its conversation cut after the first assistant message from message `n` on (other rows as they are). */
function firstMessages(row: Row, n: number): { row: Row; cut: boolean } {
  if (row.format !== 'chat') return { row, cut: false };
  const end = row.messages.findIndex((m, i) => i >= n - 1 && m.role === 'assistant') + 1;
  return end > 0 && end < row.messages.length ? { row: { ...row, messages: row.messages.slice(0, end) }, cut: true } : { row, cut: false };
}

/**
 * tokenizeSegments of a row, of which only the first maxSeqLen tokens are
 * kept, without rendering or tokenizing all of a long one: it is cut first.
 * No token covers more than longestPiece characters, so 2 × maxSeqLen ×
 * longestPiece characters give at least 2 × maxSeqLen tokens, and the tokens
 * the cut changes (those next to it) lie past the first maxSeqLen. A
 * conversation is also cut after some messages (rendering one costs as much as
 * the messages before it), ending at an answer, which the incremental chat
 * template renders as the start of the whole. Whenever fewer than 2 × maxSeqLen
 * tokens come out (few characters per message, or a normalizer folding many
 * characters into one, as runs of spaces under remove_extra_whitespaces), the
 * cut moves twice as far, until the row is whole.
 */
function tokenizeCut(tok: Tokenizer, row: Row, template: ChatTemplate, maxSeqLen: number): TokenizedExample {
  for (let messages = 16; ; messages *= 2) {
    const { row: kept, cut: fewerMessages } = firstMessages(row, messages);
    const segments = rowSegments(kept, tok, template);
    for (let chars = 2 * maxSeqLen * longestPiece(tok); ; chars *= 2) {
      const { segments: shorter, cut } = cutSegments(segments, chars);
      const ex = tokenizeSegments(tok, shorter);
      if (ex.ids.length >= 2 * maxSeqLen || (!cut && !fewerMessages)) return ex;
      if (!cut) break;
    }
  }
}

export interface ExampleSummary {
  rows: number;
  /** Tokens of the rows; a row cut before tokenizing (far longer than maxSeqLen) counts the tokens of what was tokenized. */
  tokens: number;
  /** Tokens the loss covers (after truncation). */
  learnedTokens: number;
  /** The longest row (its tokens counted as in `tokens`). */
  longest: { line: number; tokens: number } | null;
  /** Rows longer than maxSeqLen (cut). */
  truncated: number;
  /** Rows with no learned token left within maxSeqLen (skipped). */
  skipped: number;
}

export interface PreparedExamples {
  examples: (TokenizedExample & { line: number })[];
  summary: ExampleSummary;
}

/** Renders, tokenizes and cuts rows at maxSeqLen (long ones before tokenizing); rows with nothing to learn are left out (and counted). */
export function tokenizeRows(rows: Row[], tok: Tokenizer, opts: RenderOptions & { maxSeqLen: number }): PreparedExamples {
  const examples: PreparedExamples['examples'] = [];
  const summary: ExampleSummary = { rows: rows.length, tokens: 0, learnedTokens: 0, longest: null, truncated: 0, skipped: 0 };
  for (const row of rows) {
    const ex = tokenizeCut(tok, row, opts.template, opts.maxSeqLen);
    if (opts.lossOn === 'all') ex.learn.fill(1);
    summary.tokens += ex.ids.length;
    if (!summary.longest || ex.ids.length > summary.longest.tokens) summary.longest = { line: row.line, tokens: ex.ids.length };
    if (ex.ids.length > opts.maxSeqLen) summary.truncated++;
    const ids = ex.ids.slice(0, opts.maxSeqLen);
    const learn = ex.learn.slice(0, opts.maxSeqLen);
    const cut = { ids, learn, line: row.line };
    const learned = learn.reduce((n, v, t) => n + (t > 0 ? v : 0), 0);
    if (learned === 0) {
      summary.skipped++;
      continue;
    }
    summary.learnedTokens += learned;
    examples.push(cut);
  }
  return { examples, summary };
}

/**
 * Sequence packing: examples in a seeded order, concatenated greedily into
 * sequences of at most maxSeqLen tokens (an example is never split). Attention
 * is not masked between packed examples, as in most trainers' packing.
 */
export function packExamples(examples: TokenizedExample[], maxSeqLen: number, seed: number): TokenizedExample[] {
  const order = permutation(examples.length, rngFor(seed, RNG.pack));
  const packs: TokenizedExample[] = [];
  let ids: number[] = [];
  let learn: number[] = [];
  const flush = () => {
    if (ids.length) packs.push({ ids, learn: Uint8Array.from(learn) });
    ids = [];
    learn = [];
  };
  for (const i of order) {
    const ex = examples[i];
    if (ids.length + ex.ids.length > maxSeqLen) flush();
    ids.push(...ex.ids);
    learn.push(...ex.learn);
  }
  flush();
  return packs;
}

/** A seeded split of n rows: `fraction` of them (at least one, when fraction > 0 and n ≥ 2) for validation. */
export function splitIndices(n: number, fraction: number, seed: number): { train: number[]; val: number[] } {
  const nVal = fraction > 0 && n >= 2 ? Math.min(n - 1, Math.max(1, Math.round(n * fraction))) : 0;
  const order = permutation(n, rngFor(seed, RNG.split));
  const val = order.slice(0, nVal).sort((a, b) => a - b);
  const inVal = new Set(val);
  return { train: Array.from({ length: n }, (_, i) => i).filter((i) => !inVal.has(i)), val };
}
