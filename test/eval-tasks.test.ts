// The tasks file (three shapes of line, errors naming file:line), the
// harness's context/continuation tokenization, acc / acc_norm / standard
// errors, and the converters from benchmark exports (hand-written rows in
// test/fixtures/eval in each dataset's format).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertJsonl, convertRow, hellaswagPreprocess } from '../engine/eval/convert';
import { argmax, scoreItem, summarize, type EncodedItem } from '../engine/eval/multiple-choice';
import { encodeItem, encodePair, limitPerTask, parseTaskRow, readTasks } from '../engine/eval/tasks';
import { tokenizerFromJson } from '../engine/tokenizer/tokenizer';
import { FIXTURES } from './helpers/golden';
import { tempDir, tinyTokenizerJson } from './helpers/train-fixtures';

const EVAL = path.join(FIXTURES, 'eval');
const readFixture = (name: string): string => fs.readFileSync(path.join(EVAL, name), 'utf8');

/** The character-level tiny tokenizer, optionally with BPE merges. */
function tokenizer(merges: string[] = []) {
  const json = tinyTokenizerJson() as { model: { vocab: Record<string, number>; merges: string[] } };
  let id = Math.max(...Object.values(json.model.vocab)) + 1;
  for (const m of merges) json.model.vocab[m.replace(' ', '')] = id++;
  json.model.merges = merges;
  return tokenizerFromJson(json);
}

describe('tasks file', () => {
  it('reads the three shapes of line, skipping blank lines', () => {
    const file = path.join(tempDir('tasks'), 't.jsonl');
    fs.writeFileSync(
      file,
      [
        '{"task":"arc_easy","id":"q1","context":"Question: Is ice cold?\\nAnswer:","choices":["yes","no"],"gold":0}',
        '',
        '{"task":"winogrande","contexts":["A because B","A because C"],"continuation":"was late.","gold":1,"delimiter":" "}',
        '{"task":"ids","context_ids":[1,2],"choices_ids":[[3],[4,5]],"gold":1}',
      ].join('\n') + '\n',
    );
    const items = readTasks(file);
    expect(items.map((i) => [i.line, i.row.task])).toEqual([
      [1, 'arc_easy'],
      [3, 'winogrande'],
      [4, 'ids'],
    ]);
  });

  it.each([
    ['{"task":"t","context":"c","choices":["a","b"],"gold":2}', '"gold": gold is not the index of a choice'],
    ['{"task":"t","context":"c","choices":["a"],"gold":0}', '"choices": Too small'],
    ['{"task":"t","context":"c","choices":["a","b"],"gold":0,"answer":1}', 'Unrecognized key: "answer"'],
    ['{"task":"t","contexts":["a","b"],"gold":0}', '"continuation": Invalid input'],
    ['{"task":"t","context_ids":[1],"choices_ids":[[2],[-3]],"gold":0}', '"choices_ids.1.0": Too small'],
    ['{"task":"t",', 'not valid JSON'],
  ])('refuses %s', (line, message) => {
    expect(() => parseTaskRow(line, 'tasks.jsonl:7')).toThrow(message);
    expect(() => parseTaskRow(line, 'tasks.jsonl:7')).toThrow(/^tasks\.jsonl:7: /);
  });

  it('keeps the first n items of each task', () => {
    const row = (task: string) => ({ row: { task, context_ids: [1], choices_ids: [[2], [3]], gold: 0 }, line: 0 });
    const items = ['a', 'b', 'a', 'a', 'b', 'c'].map(row);
    expect(limitPerTask(items, 2).map((i) => i.row.task)).toEqual(['a', 'b', 'a', 'b', 'c']);
  });
});

describe("tokenization at the context/continuation boundary (the harness's _encode_pair)", () => {
  const tok = tokenizer();
  const ids = (s: string) => tok.encode(s);

  it('encodes context and context+continuation, the continuation being the difference', () => {
    const pair = encodePair(tok, 'Answer:', ' yes', false);
    expect(pair.context).toEqual(ids('Answer:'));
    expect(pair.continuation).toEqual(ids('Answer: yes').slice(ids('Answer:').length));
    expect(pair.continuation.map((i) => tok.idToPiece(i))).toEqual(['\u2581', 'y', 'e', 's']);
  });

  it('moves trailing whitespace of the context into the continuation', () => {
    expect(encodePair(tok, 'Answer: ', 'yes', false)).toEqual(encodePair(tok, 'Answer:', ' yes', false));
    expect(encodePair(tok, 'Q\n', 'A', false)).toEqual(encodePair(tok, 'Q', '\nA', false));
  });

  it('takes what the joint encoding has beyond the context, even when a merge crosses the boundary', () => {
    const merging = tokenizer(['a b']);
    const pair = encodePair(merging, 'xa', 'bc', false);
    expect(merging.encode('xabc').map((i) => merging.idToPiece(i))).toEqual(['\u2581', 'x', 'ab', 'c']);
    expect(pair.context.map((i) => merging.idToPiece(i))).toEqual(['\u2581', 'x', 'a']);
    expect(pair.continuation.map((i) => merging.idToPiece(i))).toEqual(['c']);
  });

  it('puts BOS before the context with bos, and makes an empty context BOS alone', () => {
    expect(encodePair(tok, 'Answer:', ' yes', true)).toEqual({
      context: [tok.bosId, ...ids('Answer:')],
      continuation: encodePair(tok, 'Answer:', ' yes', false).continuation,
    });
    expect(encodePair(tok, '', 'yes', false)).toEqual({ context: [tok.bosId], continuation: ids('yes') });
    expect(encodePair(tok, '  ', 'yes', false)).toEqual({ context: [tok.bosId], continuation: ids('  yes') });
  });

  it("scores delimiter + choice, and normalises by the choice's characters (code points, without the delimiter)", () => {
    const row = parseTaskRow('{"task":"t","context":"Q:","choices":["héllo","😀"],"gold":0}', 'x');
    const choices = encodeItem(row, tok, false, 'x');
    expect(choices.map((c) => c.normLength)).toEqual([5, 1]);
    expect(choices[0]).toMatchObject(encodePair(tok, 'Q:', ' héllo', false));
    const custom = encodeItem(parseTaskRow('{"task":"t","context":"Q:","choices":["a","b"],"gold":0,"delimiter":"\\n"}', 'x'), tok, false, 'x');
    expect(custom[1]).toMatchObject(encodePair(tok, 'Q:', '\nb', false));
  });

  it('scores the shared continuation after each context for partial evaluation, normalising by the context', () => {
    const row = parseTaskRow('{"task":"w","contexts":["It was the cup","It was the box"],"continuation":"that broke.","gold":0}', 'x');
    const choices = encodeItem(row, tok, false, 'x');
    expect(choices[1]).toMatchObject(encodePair(tok, 'It was the box', ' that broke.', false));
    expect(choices.map((c) => c.normLength)).toEqual([14, 14]);
  });

  it('takes token-id items as they are and needs a tokenizer only for text', () => {
    const ids = parseTaskRow('{"task":"t","context_ids":[1,9],"choices_ids":[[3],[4,5]],"gold":1}', 'x');
    expect(encodeItem(ids, null, true, 'x')).toEqual([
      { context: [1, 9], continuation: [3], normLength: 1 },
      { context: [1, 9], continuation: [4, 5], normLength: 2 },
    ]);
    const text = parseTaskRow('{"task":"t","context":"Q","choices":["a","b"],"gold":0}', 'f.jsonl:3');
    expect(() => encodeItem(text, null, false, 'f.jsonl:3')).toThrow("f.jsonl:3: a text item needs the model's tokenizer");
  });
});

describe('acc and acc_norm', () => {
  const item = (task: string, gold: number, normLengths: number[]): EncodedItem => ({
    task,
    line: 1,
    gold,
    choices: normLengths.map((n) => ({ context: [1], continuation: [2], normLength: n })),
  });

  it("picks by sum for acc and by sum per character for acc_norm; ties go to the first, as numpy's argmax", () => {
    // "A" (1 char, −3) beats "A longer answer" (15 chars, −6) on the sum, loses per character.
    const s = scoreItem(item('t', 1, [1, 15]), [-3, -6]);
    expect([s.pred, s.predNorm]).toEqual([0, 1]);
    expect(argmax([-1, -1, -2])).toBe(0);
    expect(argmax([-2, -1, -1])).toBe(1);
  });

  it('averages per task and over all items, with the standard error of the mean', () => {
    const scores = [
      scoreItem(item('a', 0, [1, 1]), [-1, -2]), // right
      scoreItem(item('a', 0, [1, 1]), [-2, -1]), // wrong
      scoreItem(item('a', 0, [1, 1]), [-1, -2]), // right
      scoreItem(item('b', 1, [1, 4]), [-1, -2]), // wrong by sum, right per character
    ];
    const { tasks, overall } = summarize(scores);
    expect(tasks.map((t) => t.task)).toEqual(['a', 'b']);
    expect(tasks[0].acc).toBeCloseTo(2 / 3, 12);
    // sample variance of [1, 0, 1] is 1/3; stderr = sqrt(1/3 / 3) = 1/3
    expect(tasks[0].accStderr).toBeCloseTo(1 / 3, 12);
    expect(tasks[1]).toMatchObject({ items: 1, acc: 0, accNorm: 1, accStderr: null, accNormStderr: null });
    expect(overall).toMatchObject({ items: 4, acc: 0.5, accNorm: 0.75 });
    expect(overall.accStderr).toBeCloseTo(Math.sqrt(1 / 3 / 4), 12);
  });
});

describe('converters (lm-evaluation-harness prompts)', () => {
  const convert = (format: Parameters<typeof convertJsonl>[0]) => convertJsonl(format, readFixture(`${format}.jsonl`), format, `${format}.jsonl`);

  it('ARC: "Question: …\\nAnswer:", the choice texts, gold from answerKey (letters or digits)', () => {
    expect(convert('arc')).toEqual([
      {
        task: 'arc',
        id: 'made-up-1',
        context: 'Question: Which of these is a source of light?\nAnswer:',
        choices: ['the Sun', 'the Moon', 'a mirror'],
        gold: 0,
      },
      {
        task: 'arc',
        id: 'made-up-2',
        context: 'Question: What do roots of a plant take from the soil?\nAnswer:',
        choices: ['sunlight', 'water', 'wind', 'sound'],
        gold: 1,
      },
    ]);
  });

  it('PIQA: the goal as the question, two solutions', () => {
    expect(convert('piqa')[1]).toEqual({
      task: 'piqa',
      context: 'Question: To dry wet shoes quickly,\nAnswer:',
      choices: ['fill them with ice.', 'stuff them with newspaper.'],
      gold: 1,
    });
  });

  it('HellaSwag: activity label, ctx_a and capitalized ctx_b, WikiHow artifacts removed', () => {
    expect(convert('hellaswag')).toEqual([
      {
        task: 'hellaswag',
        id: 4,
        context: 'Making a sandwich: A man lays two slices of bread on a board. Then he',
        choices: ['spreads butter on one slice. Add the filling.', 'throws the bread into the river.', 'sings to the bread.', 'paints the board blue.'],
        gold: 0,
      },
    ]);
    expect(hellaswagPreprocess(' A [header] B  ')).toBe('A B');
  });

  it('WinoGrande: partial evaluation, each option filling the blank, the rest of the sentence shared', () => {
    expect(convert('winogrande')).toEqual([
      {
        task: 'winogrande',
        contexts: ['The cup did not fit in the box because the cup', 'The cup did not fit in the box because the box'],
        continuation: 'was too big.',
        gold: 0,
      },
      {
        task: 'winogrande',
        contexts: ['Anna lent Maria her umbrella, so Anna', 'Anna lent Maria her umbrella, so Maria'],
        continuation: 'stayed dry on the way home.',
        gold: 1,
      },
    ]);
  });

  it('BoolQ: passage, question with "?", no/yes; super_glue labels and google/boolq answers', () => {
    const rows = convert('boolq');
    expect(rows[0]).toEqual({
      task: 'boolq',
      id: 0,
      context: 'Botanically, a tomato is the fruit of the tomato plant: it grows from the flower and holds the seeds.\nQuestion: is a tomato a fruit?\nAnswer:',
      choices: ['no', 'yes'],
      gold: 1,
    });
    expect(rows[1]).toMatchObject({ choices: ['no', 'yes'], gold: 0 });
  });

  it('writes rows the tasks reader takes back', () => {
    const file = path.join(tempDir('convert'), 'all.jsonl');
    const rows = (['arc', 'piqa', 'hellaswag', 'winogrande', 'boolq'] as const).flatMap(convert);
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n'));
    expect(readTasks(file).map((i) => i.row)).toEqual(rows);
  });

  it('refuses rows of another format or without labels, naming the line', () => {
    expect(() => convertJsonl('arc', readFixture('piqa.jsonl'), 'arc', 'piqa.jsonl')).toThrow(/^piqa\.jsonl:1: not a arc row: "question": /);
    expect(() => convertRow('hellaswag', { activity_label: 'a', ctx_a: 'b', ctx_b: 'c', endings: ['x', 'y'], label: '' }, 'h')).toThrow(
      'no label (a test split?)',
    );
    expect(() => convertRow('winogrande', { sentence: 'no blank', option1: 'a', option2: 'b', answer: '1' }, 'w')).toThrow('has no blank "_"');
    expect(() => convertRow('arc', { question: 'q', choices: { text: ['a', 'b'], label: ['A', 'B'] }, answerKey: 'E' }, 'arc')).toThrow(
      'answerKey "E" is not one of the labels A, B',
    );
    expect(() => convertRow('boolq', { passage: 'p', question: 'q' }, 'b')).toThrow('needs "label" (0 or 1) or "answer" (true or false)');
  });
});
