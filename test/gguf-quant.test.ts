// GGUF's pieces alone: the Q8_0/Q4_0 block quantizers against the spec's
// formulas and hand-made blocks, then against llama.cpp itself (llama-quantize
// writes the same bytes from our f32 file, ggml's own dequantizer reads the
// same floats from our files); the container's round trip and the one-line
// error of each malformed file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readConfig } from '../engine/io/checkpoint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportGguf } from '../engine/export/gguf';
import { GgufFile, ggufHeader, writeGguf, type GgufValue } from '../engine/export/gguf-file';
import { decodeTensor, dequantizeQ4_0, dequantizeQ8_0, encodeTensor, quantizeQ4_0, quantizeQ8_0 } from '../engine/export/gguf-quant';
import { f32ToF16Bits, toFloat32 } from '../engine/io/raw-tensor';
import { buildTool, describeWithLlamaCpp, runLlamaCpp } from './gguf/llama-cpp';

const DEFAULT_MODEL = path.resolve(import.meta.dirname, '../resources/default-model');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-gguf-quant-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic values with a few outliers, blocks of 32. */
function sample(n: number, seed = 1): Float32Array {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rand() * (i % 97 === 0 ? 5 : 0.1);
  return x;
}

const half = (x: number) => toFloat32({ dtype: 'F16', shape: [1], data: new Uint8Array(f32ToF16Bits(new Float32Array([x])).buffer) })[0];

describe('Q8_0', () => {
  it('writes a hand-made block as the spec says: f16 d = amax/127, then round(x/d)', () => {
    const x = new Float32Array(32).map((_, j) => (j - 16) * 0.25);
    x[0] = 127 * 0.25; // amax = 31.75 → d = 0.25
    const bytes = quantizeQ8_0(x);
    expect(bytes.length).toBe(34);
    expect(bytes[0] | (bytes[1] << 8)).toBe(0x3400); // 0.25 in f16
    expect(Array.from(new Int8Array(bytes.buffer, 2, 32))).toEqual(Array.from(x, (v) => v / 0.25));
    expect(Array.from(dequantizeQ8_0(bytes, 32))).toEqual(Array.from(x));
  });

  it('keeps every value within d/2 of its block (plus the f16 rounding of d), and zero blocks at zero', () => {
    const x = sample(32 * 64);
    x.fill(0, 64, 96);
    const back = dequantizeQ8_0(quantizeQ8_0(x), x.length);
    for (let b = 0; b < x.length / 32; b++) {
      const block = x.subarray(b * 32, b * 32 + 32);
      const amax = Math.max(...Array.from(block, Math.abs));
      const d = half(amax / 127);
      for (let j = 0; j < 32; j++) expect(Math.abs(back[b * 32 + j] - block[j])).toBeLessThanOrEqual(d / 2 + 127 * Math.abs(d - amax / 127) + 1e-7);
    }
    expect(Array.from(back.subarray(64, 96)).every((v) => v === 0)).toBe(true);
  });
});

describe('Q4_0', () => {
  it('writes a hand-made block as the spec says: d = m/−8, low nibble x[j], high nibble x[j+16]', () => {
    const x = new Float32Array(32);
    for (let j = 0; j < 16; j++) {
      x[j] = (j - 8) * 0.5; // code j; x[0] = −4 is the largest |x|, so d = 0.5
      x[16 + j] = (15 - j - 8) * 0.5; // code 15 − j
    }
    const bytes = quantizeQ4_0(x);
    expect(bytes.length).toBe(18);
    expect(bytes[0] | (bytes[1] << 8)).toBe(0x3800); // 0.5 in f16
    expect(Array.from(bytes.subarray(2))).toEqual(Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4)));
    expect(Array.from(dequantizeQ4_0(bytes, 32))).toEqual(Array.from(x));
  });

  it('keeps every value within |d|/2, except −m which clips to code 15 (within |d|)', () => {
    const x = sample(32 * 64, 7);
    x[40] = 3;
    x[41] = -3; // a block whose extremes are ±m
    const back = dequantizeQ4_0(quantizeQ4_0(x), x.length);
    for (let b = 0; b < x.length / 32; b++) {
      const block = Array.from(x.subarray(b * 32, b * 32 + 32));
      const m = block.reduce((best, v) => (Math.abs(v) > Math.abs(best) ? v : best), 0);
      const d = Math.abs(half(m / -8));
      const slack = 8 * Math.abs(d - Math.abs(m / 8)) + 1e-7;
      block.forEach((v, j) => {
        const err = Math.abs(back[b * 32 + j] - v);
        expect(err).toBeLessThanOrEqual((v * Math.sign(m) < -7.5 * d ? d : d / 2) + slack);
      });
    }
  });
});

describe('the GGUF container', () => {
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['a.u8', { type: 'u8', value: 200 }],
    ['a.i16', { type: 'i16', value: -300 }],
    ['a.u32', { type: 'u32', value: 4_000_000_000 }],
    ['a.i32', { type: 'i32', value: -5 }],
    ['a.f32', { type: 'f32', value: 0.5 }],
    ['a.bool', { type: 'bool', value: true }],
    ['a.u64', { type: 'u64', value: 2n ** 40n }],
    ['a.f64', { type: 'f64', value: Math.PI }],
    ['a.strings', { type: 'array', itemType: 'string', value: ['▁the', '<0x0A>', ''] }],
    ['a.ints', { type: 'array', itemType: 'i32', value: [1, -2, 3] }],
  ]);
  const values = sample(64 * 3);
  const tensors = [
    { name: 'f32', ne: [3], type: 'F32' as const, data: () => encodeTensor(values.subarray(0, 3), 'F32') },
    { name: 'q8', ne: [64, 3], type: 'Q8_0' as const, data: () => encodeTensor(values, 'Q8_0') },
    { name: 'q4', ne: [32, 2], type: 'Q4_0' as const, data: () => encodeTensor(values.subarray(0, 64), 'Q4_0') },
  ];

  it('reads back what it writes: metadata of every type, tensors at aligned offsets', () => {
    const file = path.join(tmp, 'round-trip.gguf');
    writeGguf(file, metadata, tensors);
    const g = GgufFile.open(file);
    try {
      expect(g.version).toBe(3);
      for (const [k, v] of metadata) expect(g.metadata.get(k), k).toEqual(v.type === 'u64' ? { ...v, value: BigInt(v.value as bigint) } : v);
      for (const t of tensors) {
        const entry = g.tensors.get(t.name)!;
        expect(entry.offset % 32).toBe(0);
        expect(Buffer.compare(Buffer.from(g.read(t.name)), Buffer.from(t.data()))).toBe(0);
      }
      expect(Array.from(decodeTensor(g.read('f32'), 'F32', 3))).toEqual(Array.from(values.subarray(0, 3)));
    } finally {
      g.close();
    }
  });

  /** The round-trip file with its bytes edited. */
  function damaged(name: string, edit: (b: Buffer) => Buffer): string {
    const src = path.join(tmp, 'round-trip.gguf');
    if (!fs.existsSync(src)) writeGguf(src, metadata, tensors);
    const file = path.join(tmp, `${name}.gguf`);
    fs.writeFileSync(file, edit(fs.readFileSync(src)));
    return file;
  }
  const headerLength = ggufHeader(metadata, tensors).header.length;
  const typeAt = (b: Buffer, name: string) => b.indexOf(Buffer.from(name)) + name.length + 4 + 8 * (name === 'f32' ? 1 : 2);

  it.each([
    ['bad magic', (b: Buffer) => Buffer.concat([Buffer.from('GGML'), b.subarray(4)]), /not a GGUF file \(starts with "GGML"\)/],
    ['version 1', (b: Buffer) => (b.writeUInt32LE(1, 4), b), /GGUF version 1 is not supported/],
    ['truncated header', (b: Buffer) => b.subarray(0, 100), /truncated GGUF header/],
    ['truncated data', (b: Buffer) => b.subarray(0, headerLength + 40), /tensor "q8" ends at byte \d+, past the end of the file/],
    ['huge tensor count', (b: Buffer) => (b.writeBigInt64LE(2n ** 40n, 8), b), /the tensor count is \d+, over the limit/],
    ['unknown tensor type', (b: Buffer) => (b.writeInt32LE(12, typeAt(b, 'q4')), b), /tensor "q4" has ggml type 12; only F32, F16, Q8_0 and Q4_0/],
  ])('refuses a file with %s in one line', (name, edit, message) => {
    const file = damaged(name.replace(/ /g, '-'), edit);
    expect(() => GgufFile.open(file)).toThrow(message);
    try {
      GgufFile.open(file);
    } catch (e) {
      expect((e as Error).message).toContain(file);
      expect((e as Error).message).not.toContain('\n');
    }
  });

  it('refuses to write a quantized tensor whose rows do not fill blocks of 32', () => {
    expect(() => writeGguf(path.join(tmp, 'bad.gguf'), metadata, [{ name: 'odd', ne: [48, 2], type: 'Q8_0', data: () => new Uint8Array(0) }])).toThrow(
      /tensor "odd": Q8_0 needs ne\[0\] \(48\) to be a multiple of 32/,
    );
  });
});

describeWithLlamaCpp('our block quantizers against llama.cpp', () => {
  let f32File: string;
  beforeAll(async () => {
    await exportGguf(DEFAULT_MODEL, path.join(tmp, 'f32'), { type: 'f32' });
    f32File = path.join(tmp, 'f32', 'model-f32.gguf');
  });

  it.each([
    ['q8_0', 'Q8_0'],
    ['q4_0', 'Q4_0'],
  ] as const)('llama-quantize --pure %s writes the very bytes our quantizer writes', (type, T) => {
    const theirsFile = path.join(tmp, `llama-quantize-${type}.gguf`);
    runLlamaCpp('llama-quantize', ['--pure', f32File, theirsFile, type, '2']);
    const ours = GgufFile.open(f32File);
    const theirs = GgufFile.open(theirsFile);
    try {
      const quantized = [...theirs.tensors.values()].filter((t) => t.type === T);
      expect(quantized.length).toBe(7 * readConfig(DEFAULT_MODEL).numBlocks + 1); // every matrix: 7 per layer and the embedding
      for (const t of quantized) {
        const mine = encodeTensor(decodeTensor(ours.read(t.name), 'F32', t.ne[0] * t.ne[1]), T);
        expect(Buffer.compare(Buffer.from(mine), Buffer.from(theirs.read(t.name))), t.name).toBe(0);
      }
    } finally {
      ours.close();
      theirs.close();
    }
  });

  it.each(['f16', 'q8_0', 'q4_0'] as const)('ggml reads our %s file and dequantizes it to the floats we do', async (type) => {
    await exportGguf(DEFAULT_MODEL, path.join(tmp, type), { type });
    const file = path.join(tmp, type, `model-${type}.gguf`);
    const out = path.join(tmp, `dequant-${type}`);
    fs.mkdirSync(out);
    runLlamaCpp(buildTool('dequant', tmp), [file, out]);
    const g = GgufFile.open(file);
    try {
      expect(fs.readdirSync(out).length).toBe(g.tensors.size);
      for (const t of g.tensors.values()) {
        const n = t.ne.reduce((a, b) => a * b, 1);
        const theirs = toFloat32({ dtype: 'F32', shape: [n], data: fs.readFileSync(path.join(out, `${t.name}.f32`)) });
        const ours = decodeTensor(g.read(t.name), t.type, n);
        expect(
          Buffer.compare(Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength), Buffer.from(theirs.buffer, theirs.byteOffset, theirs.byteLength)),
          t.name,
        ).toBe(0);
      }
    } finally {
      g.close();
    }
  });
});
