// Fine-tuning data: the validation table (each bad row with its line number and
// message), chat templates and the loss masks they give, the other row shapes,
// truncation, packing, the seeded split and the batch order.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { tokenizerFromJson, tokenizerFromSentencePiece, type Tokenizer } from '../engine/tokenizer/tokenizer';
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE, encodeChatText, loadChatTemplate, type ChatMessage } from '../engine/chat/template';
import { packExamples, parseDataset, formatIssues, rowSegments, splitIndices, tokenizeRows, tokenizeSegments, type Row } from '../engine/train/datasets';
import { BatchPlan, learnedTokens, type TokenizedExample } from '../engine/train/batching';
import { tempDir, tinyModelDir, tinyTokenizerJson, writeJsonl } from './helpers/train-fixtures';

const tmp = tempDir('datasets');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tok: Tokenizer = tokenizerFromJson(tinyTokenizerJson());
const plain = new ChatTemplate(DEFAULT_CHAT_TEMPLATE, '<s>', '</s>');
const META_MODEL = path.resolve(import.meta.dirname, '../../shared/reference/mobilellm-tokenizer/tokenizer.model');

/** The text of the learned tokens and of the rest, decoded. */
function split(ex: { ids: number[]; learn: Uint8Array }): { learned: string; other: string } {
  const pick = (v: number) => ex.ids.filter((_, i) => ex.learn[i] === v);
  return { learned: tok.decode(pick(1)), other: tok.decode(pick(0)) };
}

describe('validation', () => {
  // Each line of the file and the issue it must raise (null: a good row). Line numbers count blank lines.
  const table: [string, string | null][] = [
    ['{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}', null],
    ['{"messages":[{"role":"user","content":"hi"}', 'not valid JSON'],
    ['', null],
    [
      '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a"},{"role":"user","content":"more?"}]}',
      'conversation does not end with an assistant message',
    ],
    ['{"messages":[{"role":"robot","content":"hi"},{"role":"assistant","content":"a"}]}', '"messages[0].role" must be one of system, user, assistant'],
    ['{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"a"}]}', '"messages[0].content" is empty'],
    ['{"messages":[{"role":"user"},{"role":"assistant","content":"a"}]}', 'missing "messages[0].content"'],
    ['{"messages":[]}', '"messages" has no messages'],
    [
      '{"messages":[{"role":"user","content":"q"},{"role":"system","content":"s"},{"role":"assistant","content":"a"}]}',
      '"messages[1]" is a system message after the start',
    ],
    ['{"instruction":"Add","input":"2 3","output":"5"}', null],
    ['{"instruction":"Add","output":""}', '"output" is empty'],
    ['{"output":"5"}', 'missing "instruction"'],
    ['{"prompt":"2+2=","completion":"4"}', null],
    ['{"prompt":"2+2="}', 'missing "completion"'],
    ['{"text":"plain"}', null],
    ['{"text":42}', '"text" expected string, received number'],
    ['{"question":"?","answer":"!"}', 'unknown row shape (keys: "question", "answer")'],
    ['[1,2]', 'not a JSON object'],
  ];
  const file = writeJsonl(
    path.join(tmp, 'table.jsonl'),
    table.map(([l]) => l),
  );
  const d = parseDataset(file);

  it.each(table.map(([content, want], i) => [i + 1, want, content] as const))('line %d: %s', (line, want) => {
    const issue = d.issues.find((i) => i.line === line);
    if (want === null) expect(issue).toBeUndefined();
    else expect(issue?.message).toContain(want);
  });

  it('keeps the good rows with their line numbers and shapes, and hashes the file', () => {
    expect(d.rows.map((r) => [r.line, r.format])).toEqual([
      [1, 'chat'],
      [10, 'alpaca'],
      [13, 'completion'],
      [15, 'text'],
    ]);
    expect(d.format).toBe('mixed');
    expect(d.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    expect(formatIssues(d, 2)).toEqual([`${file}:2: ${d.issues[0].message}`, `${file}:4: ${d.issues[1].message}`, `… and ${d.issues.length - 2} more`]);
  });

  it('reads a .txt file as one example per paragraph', () => {
    const txt = path.join(tmp, 'notes.txt');
    fs.writeFileSync(txt, 'first para\nstill first\n\n\nsecond\n');
    const t = parseDataset(txt);
    expect(t.format).toBe('txt');
    expect(t.rows).toEqual([
      { line: 1, format: 'text', text: 'first para\nstill first' },
      { line: 5, format: 'text', text: 'second' },
    ]);
  });
});

describe('bytes as editors and other programs write them', () => {
  const write = (name: string, ...parts: (string | number[])[]) => {
    const file = path.join(tmp, name);
    fs.writeFileSync(file, Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))));
    return file;
  };
  const BOM = [0xef, 0xbb, 0xbf];

  it('reads past a UTF-8 byte order mark at the start of a .jsonl or .txt file', () => {
    const d = parseDataset(write('bom.jsonl', BOM, '{"text":"a"}\r\n{"text":"b"}\r\n'));
    expect(d.issues).toEqual([]);
    expect(d.rows).toEqual([
      { line: 1, format: 'text', text: 'a' },
      { line: 2, format: 'text', text: 'b' },
    ]);
    expect(parseDataset(write('bom.txt', BOM, 'first\n\nsecond\n')).rows.map((r) => r.format === 'text' && r.text)).toEqual(['first', 'second']);
  });

  // Each file and the issues it must raise: bytes that are not UTF-8 are named by line, never read as U+FFFD.
  const notUtf8: [name: string, parts: (string | number[])[], issues: [number, string][], goodLines: number[]][] = [
    [
      'latin1.jsonl',
      ['{"text":"ok"}\n{"text":"caf', [0xe9], '"}\n{"text":"fine"}\n{"text":', [0xff, 0xfe], '"}\n'],
      [
        [2, 'not valid UTF-8'],
        [4, 'not valid UTF-8'],
      ],
      [1, 3],
    ],
    ['cut-sequence.jsonl', ['{"text":"', [0xe2, 0x82], '"}\n{"text":"\u20ac"}\n'], [[1, 'not valid UTF-8']], [2]],
    ['latin1.txt', ['fine\n\ncaf', [0xe9], '\n'], [[3, 'not valid UTF-8']], [1]],
    ['utf16.jsonl', [[0xff, 0xfe], '{\0"\0t\0'], [[1, 'UTF-16']], []],
  ];
  it.each(notUtf8)('%s: refused with the line', (name, parts, issues, goodLines) => {
    const d = parseDataset(write(name, ...parts));
    expect(d.issues.map((i) => [i.line, i.message])).toEqual(issues.map(([line, text]) => [line, expect.stringContaining(text)]));
    expect(d.rows.map((r) => r.line)).toEqual(goodLines);
    expect(d.rows.some((r) => JSON.stringify(r).includes('\ufffd'))).toBe(false);
  });

  it('shows control and invisible characters of the data escaped in its messages', () => {
    // Raw control characters are not valid JSON inside strings, but JSON escapes of them are.
    const file = write('controls.jsonl', '{"\\u001b[2J\\u001b[31mkey":1}\n\x1b]0;owned\x07\n{"text":"a"}\n\ufeff{"text":"b"}\n{"a\\rb\u202e":1}\n');
    const lines = formatIssues(parseDataset(file));
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(l).not.toMatch(/[\p{Cc}\p{Cf}]/u);
    expect(lines[0]).toContain('"\\x1b[2J\\x1b[31mkey"');
    expect(lines[1]).toMatch(/^.*:2: not valid JSON .*\\x1b\]0;owned\\x07/);
    expect(lines[2]).toContain(':4: not valid JSON');
    expect(lines[2]).toContain('\\ufeff');
    expect(lines[3]).toContain('"a\\rb\\u202e"');
  });

  it('names at most a few keys of an unknown row, each shortened', () => {
    const keys = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padEnd(10_000, 'k'), i]));
    const d = parseDataset(writeJsonl(path.join(tmp, 'keys.jsonl'), [keys]));
    expect(d.issues[0].message).toMatch(/^unknown row shape \(keys: "0k+…", .* and 4\d more\)/);
    expect(d.issues[0].message.length).toBeLessThan(1000);
  });
});

describe('templates and loss masks', () => {
  const chat: Row = {
    line: 1,
    format: 'chat',
    messages: [
      { role: 'system', content: 'Be terse.' },
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '4' },
      { role: 'user', content: 'And 3+3?' },
      { role: 'assistant', content: '6' },
    ],
  };

  it('renders the plain default template', () => {
    const { text, answers } = plain.renderWithAnswers((chat as Extract<Row, { format: 'chat' }>).messages);
    expect(text).toBe('<s>### System:\nBe terse.\n\n### User:\nWhat is 2+2?\n\n### Assistant:\n4</s>### User:\nAnd 3+3?\n\n### Assistant:\n6</s>');
    expect(answers.map(([a, b]) => text.slice(a, b))).toEqual(['4</s>', '6</s>']);
    expect(plain.render([{ role: 'user', content: 'hi' }], true)).toBe('<s>### User:\nhi\n\n### Assistant:\n');
  });

  it('learns only the answers and their EOS by default; BOS and EOS are single special tokens', () => {
    const ex = tokenizeSegments(tok, rowSegments(chat, tok, plain));
    expect(ex.ids[0]).toBe(tok.bosId);
    expect(ex.ids.filter((id) => id === tok.eosId)).toHaveLength(2);
    const learnedIds = ex.ids.filter((_, i) => ex.learn[i]);
    expect(learnedIds).toEqual([tok.pieceToId('4'), tok.eosId, tok.pieceToId('6'), tok.eosId]);
    expect(split(ex).other).toContain('What is 2+2?');
  });

  it('uses a Jinja chat_template from tokenizer_config.json, answers located by incremental rendering', () => {
    const chatml =
      "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    const dir = tinyModelDir(tmp, 'tiny-gqa', chatml);
    const t = loadChatTemplate(dir, '<s>', '</s>');
    expect(t.origin).toBe(path.join(dir, 'tokenizer_config.json'));
    const ex = tokenizeSegments(tok, rowSegments(chat, tok, t));
    // The answer and what the template closes it with, and nothing else.
    const learned = ex.ids.map((id, i) => (ex.learn[i] ? id : -1));
    const runs = learned
      .join(',')
      .split(/(?:^|,)-1(?=,|$)/)
      .filter((s) => s.replace(/,/g, '').length)
      .map((s) => tok.decode(s.split(',').filter(Boolean).map(Number)));
    expect(runs).toEqual(['4<|im_end|>\n', '6<|im_end|>\n']);
    expect(loadChatTemplate(tmp, '<s>', '</s>').source).toBe(DEFAULT_CHAT_TEMPLATE); // no tokenizer_config.json
  });

  it('refuses a template whose prefixes are not prefixes of the whole', () => {
    const odd = new ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}", '<s>', '</s>');
    expect(() =>
      odd.renderWithAnswers([
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
      ]),
    ).toThrow(/does not render conversations incrementally/);
  });

  it('maps alpaca rows to a two-turn chat', () => {
    const row: Row = { line: 1, format: 'alpaca', instruction: 'Add', input: '2 3', output: '5' };
    const { learned, other } = split(tokenizeSegments(tok, rowSegments(row, tok, plain)));
    expect(learned).toBe('5');
    expect(other).toBe('### User:\nAdd\n\n2 3\n\n### Assistant:\n');
  });

  it('encodes prompt + completion as one text: no space is added at the seam', () => {
    const row: Row = { line: 1, format: 'completion', prompt: '2+2=', completion: '4' };
    const ex = tokenizeSegments(tok, rowSegments(row, tok, plain));
    expect(ex.ids).toEqual([tok.bosId, ...tok.encode('2+2=4'), tok.eosId]);
    expect(split(ex).learned).toBe('4');
  });

  it('trains on exactly the prompt the chat window builds: the chat prompt is the start of the training example', () => {
    const messages = [
      { role: 'system' as const, content: 'You are a sailor.' },
      { role: 'user' as const, content: 'Where is the whale?' },
    ];
    const answer = 'Aye, off the port bow.';
    const prompt = encodeChatText(tok, plain.render(messages, true)); // what chat-answer.ts feeds the model
    const row: Row = { line: 1, format: 'chat', messages: [...messages, { role: 'assistant', content: answer }] };
    const ex = tokenizeSegments(tok, rowSegments(row, tok, plain));
    expect(ex.ids.slice(0, prompt.length)).toEqual(prompt);
    expect(tok.decode(ex.ids.slice(prompt.length))).toBe(answer);
    expect(Array.from(ex.learn.slice(prompt.length)).every((v) => v === 1)).toBe(true); // the answer and its EOS are learned
    expect(Array.from(ex.learn.slice(0, prompt.length)).every((v) => v === 0)).toBe(true);
  });

  it('learns every token of text rows, and of anything with lossOn all', () => {
    const rows: Row[] = [chat, { line: 2, format: 'text', text: 'hello' }];
    const { examples } = tokenizeRows(rows, tok, { template: plain, lossOn: 'all', maxSeqLen: 1000 });
    for (const ex of examples) expect(Array.from(ex.learn).every((v) => v === 1)).toBe(true);
    const text = tokenizeRows([rows[1]], tok, { template: plain, lossOn: 'answers', maxSeqLen: 1000 }).examples[0];
    expect(Array.from(text.learn)).toEqual([0, ...new Array(text.ids.length - 1).fill(1)]);
  });
});

describe('rows far longer than maxSeqLen', () => {
  const tokenizers: [string, Tokenizer][] = [['the tiny tokenizer', tok]];
  if (fs.existsSync(META_MODEL)) tokenizers.push(["Meta's tokenizer", tokenizerFromSentencePiece(fs.readFileSync(META_MODEL))]);

  /** `t`, counting the characters it is asked to encode. */
  function counting(t: Tokenizer): { tok: Tokenizer; chars: () => number } {
    let chars = 0;
    const counted = Object.create(t) as Tokenizer;
    counted.encode = (text, opts) => ((chars += text.length), t.encode(text, opts));
    return { tok: counted, chars: () => chars };
  }

  /** n characters of varied words, digits, punctuation, runs of spaces and a few non-ASCII characters. */
  const prose = (n: number, seed: number) => {
    const words = ['the', 'whale', 'Ahab', 'naïve', '1234', 'ship,', 'sea.', '  ', 'über', '鯨', '🐋', 'x=y+2;', 'Call\nme'];
    let text = '';
    for (let i = seed; text.length < n; i++) text += words[(i * 7919) % words.length] + ' ';
    return text.slice(0, n);
  };
  /** `turns` user and assistant messages of a few words each. */
  const conversation = (turns: number, seed: number): ChatMessage[] =>
    Array.from({ length: 2 * turns }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: prose(5 + (i % 13), seed + i).trim() || 'x' }));
  const rows: Row[] = [
    { line: 1, format: 'text', text: prose(30_000, 1) },
    { line: 2, format: 'completion', prompt: prose(20_000, 2), completion: prose(20_000, 3) },
    { line: 3, format: 'completion', prompt: 'Q: ', completion: prose(20_000, 4) },
    { line: 4, format: 'text', text: 'a'.repeat(30_000) },
    {
      line: 5,
      format: 'chat',
      messages: [
        { role: 'user', content: prose(20_000, 5) },
        { role: 'assistant', content: prose(20_000, 6) },
      ],
    },
    {
      line: 6,
      format: 'chat',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: prose(20_000, 7) },
      ],
    },
    { line: 7, format: 'alpaca', instruction: 'Summarise', input: prose(20_000, 8), output: 'Short.' },
    { line: 8, format: 'text', text: 'short row' },
    { line: 9, format: 'chat', messages: conversation(150, 10) },
    { line: 10, format: 'chat', messages: [{ role: 'system', content: prose(3_000, 11) }, ...conversation(40, 12)] },
  ];

  describe.each(tokenizers)('%s', (_, t) => {
    const whole = new Map<Row, TokenizedExample>();
    /** What tokenizeRows gives by definition: the whole row tokenized, then cut at maxSeqLen. */
    function wholeThenCut(row: Row, maxSeqLen: number, lossOn: 'answers' | 'all') {
      if (!whole.has(row)) whole.set(row, tokenizeSegments(t, rowSegments(row, t, plain)));
      const ex = whole.get(row)!;
      const learn = lossOn === 'all' ? new Uint8Array(ex.learn.length).fill(1) : ex.learn;
      return { ids: ex.ids.slice(0, maxSeqLen), learn: learn.slice(0, maxSeqLen), line: row.line };
    }

    it.each([16, 100, 512])('gives the same examples as tokenizing whole rows and cutting them (maxSeqLen %d)', (maxSeqLen) => {
      for (const lossOn of ['answers', 'all'] as const) {
        const want = rows.map((r) => wholeThenCut(r, maxSeqLen, lossOn)).filter((e) => e.learn.some((v, i) => i > 0 && v));
        expect(tokenizeRows(rows, t, { template: plain, lossOn, maxSeqLen }).examples).toEqual(want);
      }
    });

    it('tokenizes a 10 MB line only as far as maxSeqLen can reach', () => {
      const counted = counting(t);
      const text = prose(10 * 1024 * 1024, 9);
      const { examples, summary } = tokenizeRows([{ line: 1, format: 'text', text }], counted.tok, { template: plain, lossOn: 'answers', maxSeqLen: 64 });
      expect(counted.chars()).toBeLessThan(20_000);
      expect(examples).toEqual([wholeThenCut({ line: 1, format: 'text', text: text.slice(0, 100_000) }, 64, 'answers')]);
      expect(summary).toMatchObject({ rows: 1, truncated: 1, skipped: 0, learnedTokens: 63 });
    });

    it('renders a conversation of 100 000 messages only as far as maxSeqLen can reach', () => {
      let rendered = 0;
      const counted = Object.create(plain) as ChatTemplate;
      counted.render = (messages, addGenerationPrompt) => ((rendered += messages.length), plain.render(messages, addGenerationPrompt));
      const row: Row = { line: 1, format: 'chat', messages: conversation(50_000, 13) };
      const { examples, summary } = tokenizeRows([row], t, { template: counted, lossOn: 'answers', maxSeqLen: 64 });
      expect(rendered).toBeLessThan(10_000);
      expect(examples).toEqual([wholeThenCut({ ...row, messages: row.messages.slice(0, 200) }, 64, 'answers')]);
      expect(summary).toMatchObject({ rows: 1, truncated: 1, skipped: 0 });
    });
  });
});

describe('summary, truncation and packing', () => {
  const rows: Row[] = [
    { line: 1, format: 'completion', prompt: 'a', completion: 'b' },
    { line: 2, format: 'completion', prompt: 'x'.repeat(30), completion: 'y' },
    { line: 3, format: 'text', text: 'z'.repeat(12) },
  ];

  it('counts rows, tokens, the longest row, truncated rows and rows left with nothing to learn', () => {
    const { examples, summary } = tokenizeRows(rows, tok, { template: plain, lossOn: 'answers', maxSeqLen: 10 });
    // row 1: <s> ▁ a b </s> = 5; row 2: <s> ▁ x×30 y </s> = 34; row 3: <s> ▁ z×12 </s> = 15
    expect(summary).toEqual({ rows: 3, tokens: 54, learnedTokens: 2 + 9, longest: { line: 2, tokens: 34 }, truncated: 2, skipped: 1 });
    expect(examples.map((e) => [e.line, e.ids.length])).toEqual([
      [1, 5],
      [3, 10],
    ]);
    expect(learnedTokens(examples)).toBe(summary.learnedTokens);
  });

  it('packs whole examples into sequences of at most maxSeqLen, the same way for the same seed', () => {
    const exs = Array.from({ length: 20 }, (_, i) => ({ ids: new Array(3 + (i % 5)).fill(7 + i), learn: new Uint8Array(3 + (i % 5)).fill(1) }));
    const packs = packExamples(exs, 16, 1);
    expect(packs.every((p) => p.ids.length <= 16)).toBe(true);
    expect(packs.reduce((n, p) => n + p.ids.length, 0)).toBe(exs.reduce((n, e) => n + e.ids.length, 0));
    expect(packs.length).toBeLessThan(exs.length);
    expect(packExamples(exs, 16, 1)).toEqual(packs);
    expect(packExamples(exs, 16, 2)).not.toEqual(packs);
  });

  it('splits off a seeded validation set, disjoint and repeatable', () => {
    const a = splitIndices(50, 0.1, 3);
    expect(a.val).toHaveLength(5);
    expect(a.train).toHaveLength(45);
    expect(new Set([...a.train, ...a.val]).size).toBe(50);
    expect(splitIndices(50, 0.1, 3)).toEqual(a);
    expect(splitIndices(50, 0.1, 4).val).not.toEqual(a.val);
    expect(splitIndices(5, 0, 3).val).toEqual([]);
    expect(splitIndices(3, 0.01, 3).val).toHaveLength(1);
  });

  it('plans steps as a pure function of (seed, epoch): every example once per epoch', () => {
    const plan = new BatchPlan(10, 3, 2, 7); // 4 micro-batches per epoch, 2 steps
    expect(plan.stepsPerEpoch).toBe(2);
    const epoch0 = [...plan.step(0), ...plan.step(1)];
    expect(epoch0.map((m) => m.length)).toEqual([3, 3, 3, 1]);
    expect(epoch0.flat().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new BatchPlan(10, 3, 2, 7).step(1)).toEqual(plan.step(1));
    expect(plan.step(2).flat()).not.toEqual(epoch0.slice(0, 2).flat()); // a new order in epoch 1
    expect(plan.epochOf(3)).toBe(1);
  });
});
