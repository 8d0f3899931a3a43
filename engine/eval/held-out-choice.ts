// The bundled zero-shot set, resources/eval/held-out-choice.jsonl, made from
// the held-out text alone (resources/eval/held-out.txt: text no bundled or
// lab model trained on), so a model's score there is not recall. Two tasks of
// four choices each (chance 25%), lines in the tasks-file shape of tasks.ts,
// both about one word of a sentence swapped for words of the same frequency
// band in the held-out text and about the same length, so that neither word
// frequency nor length gives the answer:
//
//   held-out-cloze      the sentence before as context; the choices are the
//                       sentence itself and three copies with the word swapped
//                       (the model weighs the words on both sides of it).
//   held-out-next-word  the sentence before and the sentence up to the word as
//                       context; the choices are the word and three others
//                       (left context only, LAMBADA's question as a choice).
//
// A third kind, the first half of a sentence with its true second half among
// those of other sentences (HellaSwag's shape), was left out: the then bundled
// 9.4M model scored 34–39% on it against a random model's 27–30% (100 items,
// ± 4.8), too close to chance to tell small models apart.
//
// Everything is a pure function of the text and the seed: the same inputs give
// the same file byte for byte (scripts/held-out-choice.js writes it; a test
// checks the shipped file against a fresh build).
import fs from 'node:fs';
import path from 'node:path';
import { RESOURCES } from '../server/resources';
import { permutation, rngFor } from '../train/rng';
import type { SharedContextRow } from './tasks';

export interface HeldOutChoiceOptions {
  seed: number;
  /** Items per task. */
  items: number;
}

export const HELD_OUT_CHOICE: HeldOutChoiceOptions = { seed: 135, items: 100 };

const CHOICES = 4;

export interface Sentence {
  /** Index of its document and of its paragraph in the text. */
  doc: number;
  paragraph: number;
  text: string;
  /** The sentence before it in the same paragraph, or null. */
  previous: string | null;
}

// A sentence ends at . ! or ? (and a closing quote or bracket) before
// whitespace and a capital, an opening quote or a bracket; not after a title.
const SENTENCE_END = /(?<=[.!?]["”’)]?)\s+(?=["“(]?[A-Z])/;
const TITLE = /\b(?:Mr|Mrs|Dr|St|Mt)\.$/;

function splitSentences(paragraph: string): string[] {
  const out: string[] = [];
  for (const piece of paragraph.split(SENTENCE_END)) {
    if (out.length && TITLE.test(out[out.length - 1])) out[out.length - 1] += ' ' + piece;
    else out.push(piece);
  }
  return out.map((s) => s.trim()).filter(Boolean);
}

/**
 * The sentences of `documents` (each a text of paragraphs separated by blank
 * lines; line breaks inside a paragraph are spaces).
 */
export function sentencesOf(documents: string[]): Sentence[] {
  const out: Sentence[] = [];
  let paragraph = 0;
  documents.forEach((text, doc) => {
    for (const para of text.split(/\n\s*\n/)) {
      const flat = para.replace(/\s+/g, ' ').trim();
      if (!flat) continue;
      let previous: string | null = null;
      for (const s of splitSentences(flat)) {
        out.push({ doc, paragraph, text: s, previous });
        previous = s;
      }
      paragraph++;
    }
  });
  return out;
}

const words = (s: string): string[] => s.split(' ');

/** `n` distinct picks from `pool` (in draw order), preferring those `near` the target by `distance`, ties broken by the seeded order. */
function pickNear<T>(pool: T[], n: number, distance: (x: T) => number, random: () => number): T[] {
  return permutation(pool.length, random)
    .map((i, rank) => ({ x: pool[i], d: distance(pool[i]), rank }))
    .sort((a, b) => a.d - b.d || a.rank - b.rank)
    .slice(0, n)
    .map((p) => p.x);
}

/** Puts `gold` among `others` at a seeded position. */
function place(gold: string, others: string[], random: () => number): { choices: string[]; gold: number } {
  const at = Math.floor(random() * (others.length + 1));
  return { choices: [...others.slice(0, at), gold, ...others.slice(at)], gold: at };
}

// A word to swap: lower-case letters only (no names, no punctuation to keep).
const SWAPPABLE = /^[a-z]{3,}$/;

/** Picks `CHOICES − 1` words for `target`: the same frequency band first, then the nearest bands; within a band, the closest length. */
function swapsFor(sentences: Sentence[]): (target: string, exclude: Set<string>, random: () => number) => string[] {
  const counts = new Map<string, number>();
  for (const s of sentences) for (const w of words(s.text)) if (SWAPPABLE.test(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const band = (w: string) => Math.floor(Math.log2(counts.get(w)!));
  const vocabulary = [...counts.keys()].sort();
  return (target, exclude, random) =>
    pickNear(
      vocabulary.filter((v) => v !== target && !exclude.has(v)),
      CHOICES - 1,
      (v) => 100 * Math.abs(band(v) - band(target)) + Math.abs(v.length - target.length),
      random,
    );
}

/** The sentences of 8–40 words after another one, with a swappable word from word `first` on; `n` of them in a seeded order. */
function pickSentences(sentences: Sentence[], first: number, n: number, random: () => number): { s: Sentence; w: string[]; slots: number[] }[] {
  const eligible = sentences
    .filter((s) => s.previous !== null)
    .map((s) => ({ s, w: words(s.text) }))
    .filter(({ w }) => w.length >= 8 && w.length <= 40)
    .map(({ s, w }) => ({ s, w, slots: w.map((x, k) => (k >= first && SWAPPABLE.test(x) ? k : -1)).filter((k) => k >= 0) }))
    .filter(({ slots }) => slots.length > 0);
  if (eligible.length < n) throw new Error(`held-out text: ${eligible.length} sentences fit, ${n} items asked for`);
  return permutation(eligible.length, random)
    .slice(0, n)
    .map((i) => eligible[i]);
}

function clozeItems(sentences: Sentence[], o: HeldOutChoiceOptions): SharedContextRow[] {
  const swaps = swapsFor(sentences);
  return pickSentences(sentences, 1, o.items, rngFor(o.seed, 1)).map(({ s, w, slots }, id) => {
    const random = rngFor(o.seed, 2, id);
    const slot = slots[Math.floor(random() * slots.length)];
    // Words of the sentence are no distractors: "the ship … the ship" is no swap.
    const others = swaps(w[slot], new Set(w), random).map((v) => [...w.slice(0, slot), v, ...w.slice(slot + 1)].join(' '));
    return { task: 'held-out-cloze', id, context: s.previous!, ...place(s.text, others, random) };
  });
}

function nextWordItems(sentences: Sentence[], o: HeldOutChoiceOptions): SharedContextRow[] {
  const swaps = swapsFor(sentences);
  return pickSentences(sentences, 2, o.items, rngFor(o.seed, 3)).map(({ s, w, slots }, id) => {
    const random = rngFor(o.seed, 4, id);
    const slot = slots[Math.floor(random() * slots.length)];
    const context = `${s.previous} ${w.slice(0, slot).join(' ')}`;
    return { task: 'held-out-next-word', id, context, ...place(w[slot], swaps(w[slot], new Set(), random), random) };
  });
}

/** The bundled set from the held-out documents: cloze items, then next-word items. */
export function buildHeldOutChoice(documents: string[], o: HeldOutChoiceOptions = HELD_OUT_CHOICE): SharedContextRow[] {
  if (!Number.isInteger(o.seed) || o.seed < 0) throw new Error(`seed ${o.seed}: must be a non-negative integer`);
  const sentences = sentencesOf(documents);
  return [...clozeItems(sentences, o), ...nextWordItems(sentences, o)];
}

export const HELD_OUT_TEXT = path.join(RESOURCES, 'eval', 'held-out.txt');
export const HELD_OUT_CHOICE_PATH = path.join(RESOURCES, 'eval', 'held-out-choice.jsonl');

// held-out.txt is Moby-Dick ch. 135 followed by FDR's 1941 address, which opens with this.
const SECOND_DOCUMENT = 'Mr. President, Mr. Speaker, Members of the Seventy-seventh Congress';

/** The two documents of held-out.txt. */
export function heldOutDocuments(text: string): string[] {
  const at = text.indexOf(SECOND_DOCUMENT);
  if (at < 0) throw new Error(`held-out text: FDR's address ("${SECOND_DOCUMENT}…") not found`);
  return [text.slice(0, at), text.slice(at)];
}

/** The bundled file's contents, built afresh from held-out.txt. */
export function heldOutChoiceFile(text = fs.readFileSync(HELD_OUT_TEXT, 'utf8')): string {
  return buildHeldOutChoice(heldOutDocuments(text))
    .map((r) => JSON.stringify(r) + '\n')
    .join('');
}
