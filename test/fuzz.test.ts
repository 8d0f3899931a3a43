// A seeded fuzz of the four inputs the engine reads from strangers: a
// safetensors header, a config.json, a JSONL dataset line and a protocol
// request. Each case mutates a valid input (bytes flipped, inserted, dropped
// or repeated; or one JSON value swapped for an awkward one) and feeds it to
// the code that reads it. Every case must either succeed or fail with an Error
// of one printable line, never a TypeError or RangeError from inside our code,
// each within a generous time, with the process's memory bounded.
// Findings are collected and shown together; nothing is printed on success.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { initBackend } from '../engine/backend/select';
import { readSafetensors, safetensorsHeader } from '../engine/io/safetensors';
import { configFromHf, configToHf, countParams, layerSchedule } from '../engine/model/config';
import { preset } from '../engine/model/presets';
import { formatIssues, parseDataset, tokenizeRows } from '../engine/train/datasets';
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE } from '../engine/chat/template';
import { tokenizerFromJson } from '../engine/tokenizer/tokenizer';
import { openStore } from '../engine/store/open';
import { EngineService } from '../engine/server/service';
import { requests, type Method, type RequestFrame } from '../engine/protocol/protocol';
import { tempDir, tinyModelDir, tinyTokenizerJson } from './helpers/train-fixtures';
import { seededRandom } from '../engine/generate/sampling';

const SEED = 14;
/** Cases per input kind (config.json's are the quickest, and have the most keys to vary). */
const CASES = { safetensors: 800, 'config.json': 2000, jsonl: 800, protocol: 800 };
/** Slowest a single case may be (generous: the machine is shared). */
const CASE_MS = 2_000;
/** Growth of the resident set over the whole fuzz. */
const RSS_GROWTH = 1024 ** 3;

const tmp = tempDir('fuzz');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

class Mutator {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /** 1 to 4 byte-level changes. */
  bytes(input: Buffer): Buffer {
    let b = Buffer.from(input);
    for (let k = 1 + this.int(4); k > 0; k--) {
      const at = this.int(b.length + 1);
      const len = 1 + this.int(8);
      switch (this.int(6)) {
        case 0: // flip a bit
          if (b.length) b[at % b.length] ^= 1 << this.int(8);
          break;
        case 1: // an awkward byte
          if (b.length) b[at % b.length] = this.pick(AWKWARD_BYTES);
          break;
        case 2: // insert random bytes
          b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: len }, () => this.int(256))), b.subarray(at)]);
          break;
        case 3: // drop a range
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
          break;
        case 4: // repeat a range
          b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at)]);
          break;
        case 5: // an awkward token
          b = Buffer.concat([b.subarray(0, at), Buffer.from(this.pick(AWKWARD_TOKENS)), b.subarray(at + this.int(3))]);
          break;
      }
    }
    return b;
  }

  /** One value somewhere in the JSON tree (or a key of an object) swapped for an awkward one. */
  value(input: unknown): unknown {
    const root = structuredClone(input);
    const holders: (Record<string, unknown> | unknown[])[] = [];
    const walk = (v: unknown) => {
      if (typeof v !== 'object' || v === null) return;
      holders.push(v as Record<string, unknown>);
      Object.values(v).forEach(walk);
    };
    walk(root);
    if (!holders.length) return this.pick(awkwardValues());
    const h = this.pick(holders);
    const keys = Object.keys(h);
    if (Array.isArray(h) || this.int(4) > 0 || !keys.length) {
      const key = keys.length && this.int(5) > 0 ? this.pick(keys) : this.pick(['__proto__', 'constructor', 'x', '0']);
      (h as Record<string, unknown>)[key] = this.pick(awkwardValues());
    } else {
      const key = this.pick(keys);
      const v = (h as Record<string, unknown>)[key];
      delete (h as Record<string, unknown>)[key];
      (h as Record<string, unknown>)[this.pick(AWKWARD_STRINGS)] = v;
    }
    return root;
  }
}

const AWKWARD_BYTES = [0x00, 0xff, 0x80, 0xc3, 0x1b, 0x0a, 0x0d, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x2d, 0x30, 0x39, 0x65];
const AWKWARD_TOKENS = [
  '-1',
  '1e309',
  '-0',
  '9007199254740993',
  '1e9',
  '0.5',
  'null',
  'true',
  '[]',
  '{}',
  '""',
  '"\\u0000"',
  '"\\ud800"',
  '\\n',
  '"\\u001b[2J"',
  '\ufeff',
];
const AWKWARD_STRINGS = [
  '',
  'x',
  '__proto__',
  'constructor',
  'toString',
  '\u001b]0;t\u0007',
  'a\nb',
  '\ud800',
  '../../../etc/passwd',
  '\u202e',
  'é'.repeat(300),
];
const deep = (n: number): unknown => {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};
const awkwardValues = (): unknown[] => [
  0,
  -1,
  1,
  0.5,
  -0,
  2 ** 31,
  2 ** 53,
  1e9,
  1e12,
  1e300,
  -1e300,
  ...AWKWARD_STRINGS,
  'x'.repeat(100_000),
  null,
  true,
  false,
  [],
  {},
  [1, 2, 3],
  [-1],
  { __proto__: null, x: 1 },
  deep(3000),
];

/** A problem a case's own checks found (as opposed to a failure of the code under test, judged by badFailure). */
class Finding extends Error {}

/** Why `err` is not an acceptable failure, or null. */
function badFailure(err: unknown): string | null {
  if (!(err instanceof Error)) return `threw a non-Error ${String(err)}`;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError) return `${err.name}: ${err.message.slice(0, 200)}`;
  if (/[\n\r]/.test(err.message)) return `a message of several lines: ${JSON.stringify(err.message.slice(0, 200))}`;
  return null;
}

/** Runs each case, collecting what went wrong (with the input that did it). */
async function fuzz<T>(
  name: keyof typeof CASES,
  inputs: (m: Mutator) => T,
  run: (input: T) => unknown,
  describeInput: (input: T) => string,
): Promise<string[]> {
  const m = new Mutator(SEED + name.length);
  const findings: string[] = [];
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < CASES[name]; i++) {
    const input = inputs(m);
    const t0 = performance.now();
    let problem: string | null = null;
    try {
      await run(input);
    } catch (err) {
      problem = err instanceof Finding ? err.message : badFailure(err);
    }
    const ms = performance.now() - t0;
    if (ms > CASE_MS) problem = `took ${ms.toFixed(0)} ms`;
    const rss = process.memoryUsage().rss;
    if (rss - rss0 > RSS_GROWTH) problem = `resident set grew by ${((rss - rss0) / 1024 ** 2).toFixed(0)} MB`;
    if (problem) findings.push(`${name} case ${i}: ${problem}; input ${describeInput(input).slice(0, 300)}`);
    if (findings.length >= 20) break;
  }
  return findings;
}

const asText = (b: Buffer) => JSON.stringify(b.toString('latin1'));

describe('fuzz', () => {
  it('safetensors headers', async () => {
    const tensors: [string, { dtype: 'F32' | 'I64' | 'BF16'; shape: number[] }][] = [
      ['model.embed_tokens.weight', { dtype: 'F32', shape: [4, 3] }],
      ['model.norm.weight', { dtype: 'BF16', shape: [3] }],
      ['ids', { dtype: 'I64', shape: [2] }],
    ];
    const header = safetensorsHeader(tensors, { format: 'pt' });
    const data = Buffer.alloc(4 * 12 + 2 * 3 + 8 * 2, 7);
    const file = path.join(tmp, 'fuzz.safetensors');
    const findings = await fuzz(
      'safetensors',
      (m) => {
        // The length prefix and the JSON, mutated; the data after them as it was.
        const json = m.int(2) ? m.bytes(header.subarray(8)) : Buffer.from(JSON.stringify(m.value(JSON.parse(header.subarray(8).toString()))));
        const mutated = Buffer.concat([Buffer.alloc(8), json]);
        if (m.int(8))
          mutated.writeBigUInt64LE(BigInt(json.length), 0); // mostly a consistent length, to reach the JSON
        else mutated.set(m.bytes(header.subarray(0, 8)).subarray(0, 8));
        return Buffer.concat([mutated, data]);
      },
      (bytes) => {
        fs.writeFileSync(file, bytes);
        readSafetensors(file);
      },
      (bytes) => asText(bytes.subarray(0, 200)),
    );
    expect(findings).toEqual([]);
  });

  it('config.json', async () => {
    const valid = configToHf(preset('125M'));
    const text = Buffer.from(JSON.stringify(valid, null, 2));
    const findings = await fuzz(
      'config.json',
      (m) => (m.int(2) ? m.bytes(text).toString('utf8') : JSON.stringify(m.value(valid))),
      (json) => {
        let value: unknown;
        try {
          value = JSON.parse(json);
        } catch {
          return; // not JSON: the folder reader reports that before configFromHf sees it
        }
        const c = configFromHf(value);
        // What `mlw info` does with it next.
        countParams(c);
        layerSchedule(c);
      },
      (json) => JSON.stringify(json),
    );
    expect(findings).toEqual([]);
  });

  it('JSONL dataset lines', async () => {
    const tok = tokenizerFromJson(tinyTokenizerJson());
    const template = new ChatTemplate(DEFAULT_CHAT_TEMPLATE, '<s>', '</s>');
    const lines: unknown[] = [
      {
        messages: [
          { role: 'system', content: 'Be terse.' },
          { role: 'user', content: 'What is 2+2?' },
          { role: 'assistant', content: '4' },
        ],
      },
      { instruction: 'Add', input: '2 3', output: '5' },
      { prompt: '2+2=', completion: '4' },
      { text: 'plain text' },
    ];
    const file = path.join(tmp, 'fuzz.jsonl');
    const findings = await fuzz(
      'jsonl',
      (m) => {
        const line = m.pick(lines);
        return m.int(2) ? m.bytes(Buffer.from(JSON.stringify(line))) : Buffer.from(JSON.stringify(m.value(line)));
      },
      (bytes) => {
        fs.writeFileSync(file, Buffer.concat([bytes, Buffer.from('\n{"text":"a second row"}\n')]));
        const d = parseDataset(file);
        for (const l of formatIssues(d)) if (/[\p{Cc}\n]/u.test(l)) throw new Finding(`an issue shown with a control character: ${JSON.stringify(l)}`);
        tokenizeRows(d.rows, tok, { template, lossOn: 'answers', maxSeqLen: 64 });
      },
      asText,
    );
    expect(findings).toEqual([]);
  });

  describe('protocol requests', () => {
    let service: EngineService;
    beforeAll(async () => {
      await initBackend();
      service = new EngineService(openStore({ home: path.join(tmp, 'home'), notify: () => {} }), 'fuzz');
      await service.handle('models.import', { path: tinyModelDir(tmp) });
      fs.writeFileSync(path.join(tmp, 'data.jsonl'), '{"text":"hello"}\n');
    });
    afterAll(() => service.close());

    /** Methods that start work in the background (a job) or remove the model the others use, which the fuzz leaves alone. */
    const leftAlone = (m: Method) => {
      const r = requests[m].result;
      return (r instanceof z.ZodObject && 'jobId' in r.shape) || m === 'models.remove';
    };

    it('answers every frame with a result or a one-line error', async () => {
      const frames: RequestFrame[] = [
        { id: 1, method: 'engine.status', params: {} },
        { id: 2, method: 'models.get', params: { id: 1 } },
        { id: 3, method: 'chats.list', params: { search: 'x' } },
        { id: 4, method: 'chats.create', params: { modelId: 1, title: 't', sampling: { temperature: 0.7, maxNewTokens: 32 } } },
        { id: 5, method: 'inspect.costs', params: { modelId: 1, repeats: 2, contextTokens: 512 } },
        { id: 6, method: 'runs.curve', params: { id: 1, name: 'loss' } },
        { id: 7, method: 'datasets.upload', params: { name: 'a.jsonl', content: '{"text":"hi"}\n' } },
        { id: 8, method: 'datasets.inspect', params: { path: path.join(tmp, 'data.jsonl'), modelId: 1, maxSeqLen: 64, lossOn: 'answers' } },
        { id: 9, method: 'jobs.cancel', params: { jobId: 'x', mode: 'pause' } },
        { id: 10, method: 'finetune.estimate', params: { modelId: 1, data: path.join(tmp, 'data.jsonl') } },
        { id: 11, method: 'chats.get', params: { id: 1 } },
        { id: 12, method: 'reports.list', params: { modelId: 1 } },
      ];
      const methods = (Object.keys(requests) as Method[]).filter((m) => !leftAlone(m));
      const findings = await fuzz(
        'protocol',
        (m) => {
          const frame = m.pick(frames);
          if (m.int(3) === 0) return m.bytes(Buffer.from(JSON.stringify(frame))).toString('utf8');
          if (m.int(4) === 0) return JSON.stringify({ ...frame, method: m.pick(methods) });
          return JSON.stringify(m.value(frame));
        },
        async (text) => {
          let frame: RequestFrame;
          try {
            frame = JSON.parse(text);
          } catch {
            return; // the transports close the socket on a frame that is not JSON
          }
          if (typeof frame?.id !== 'number' || typeof frame.method !== 'string') return; // so they do on a frame without id or method
          if (Object.hasOwn(requests, frame.method) && leftAlone(frame.method as Method)) return;
          const answer = await service.respond(frame);
          if ('error' in answer) {
            const problem = badFailure(new Error(answer.error.message));
            if (problem) throw new Finding(problem);
            if (/\p{Cc}/u.test(answer.error.message)) throw new Finding(`an answer with a control character: ${JSON.stringify(answer.error.message)}`);
          }
        },
        (text) => JSON.stringify(text),
      );
      expect(findings).toEqual([]);
    });
  });
});
