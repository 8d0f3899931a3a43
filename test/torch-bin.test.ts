// pytorch_model.bin reading: the real torch.save golden file against its
// safetensors twin, and hand-built zips/pickles (no Python here) for the
// layouts torch emits and for everything that must be refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MAX_PICKLE_OPCODES, openTorchBin } from '../engine/io/torch-bin';
import { SafetensorsFile } from '../engine/io/safetensors';
import { f32ToF16Bits, toFloat32 } from '../engine/io/raw-tensor';
import { ZipReader } from '../engine/io/zip';

const GOLDEN_BIN = '/work/shared/golden/tiny-gqa-bin/pytorch_model.bin';
const GOLDEN_SAFETENSORS = '/work/shared/golden/tiny-gqa/model.safetensors';

// ---------------------------------------------------------------------------
// A tiny pickle writer: each helper returns the opcodes that push one value.

const cat = (...parts: (Buffer | number[])[]) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const MARK = [0x28];
const TUPLE = [0x74];
const EMPTY_TUPLE = [0x29];
const REDUCE = [0x52];
const SETITEMS = [0x75];
const NEWFALSE = [0x89];

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
/** BINUNICODE */
const str = (s: string) => cat([0x58], u32(Buffer.byteLength(s)), Buffer.from(s, 'utf8'));
/** SHORT_BINUNICODE */
const shortStr = (s: string) => cat([0x8c, Buffer.byteLength(s)], Buffer.from(s, 'utf8'));
/** BININT1 / BININT2 / BININT */
function int(n: number): Buffer {
  if (n < 256) return Buffer.from([0x4b, n]);
  if (n < 65536) return Buffer.from([0x4d, n & 0xff, n >> 8]);
  return cat([0x4a], u32(n));
}
/** GLOBAL 'module\nname\n' */
const glob = (module: string, name: string) => cat([0x63], Buffer.from(`${module}\n${name}\n`));
/** STACK_GLOBAL from two strings */
const stackGlob = (module: string, name: string) => cat(shortStr(module), shortStr(name), [0x93]);
const tuple = (...items: Buffer[]) => (items.length ? cat(MARK, ...items, TUPLE) : Buffer.from(EMPTY_TUPLE));
const orderedDict = () => cat(glob('collections', 'OrderedDict'), EMPTY_TUPLE, REDUCE);
/** OrderedDict filled with SETITEMS, as torch.save writes a state_dict. */
const dictOf = (entries: [Buffer, Buffer][]) => cat(orderedDict(), MARK, ...entries.flat(), SETITEMS);
const pickle = (body: Buffer) => cat([0x80, 0x02], body, [0x2e]);

interface TensorSpec {
  storage: string; // 'FloatStorage', ...
  key: string;
  numel: number; // of the storage
  offset?: number;
  size: number[];
  stride?: number[];
}

function contiguousStride(size: number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= size[d];
  }
  return s;
}

/** _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()) */
function tensor(t: TensorSpec, rebuild = glob('torch._utils', '_rebuild_tensor_v2')): Buffer {
  const pid = cat(MARK, str('storage'), glob('torch', t.storage), str(t.key), str('cpu'), int(t.numel), TUPLE, [0x51]);
  const args = tuple(
    pid,
    int(t.offset ?? 0),
    tuple(...t.size.map(int)),
    tuple(...(t.stride ?? contiguousStride(t.size)).map(int)),
    Buffer.from(NEWFALSE),
    orderedDict(),
  );
  return cat(rebuild, args, REDUCE);
}

const stateDict = (tensors: [string, TensorSpec][]) => dictOf(tensors.map(([name, t]) => [str(name), tensor(t)]));

// ---------------------------------------------------------------------------
// A tiny zip writer (stored or deflated; optionally with ZIP64 records, as torch writes).

interface ZipInput {
  name: string;
  data: Buffer;
  deflate?: boolean;
}

function zipFile(entries: ZipInput[], zip64 = false): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const body = e.deflate ? zlib.deflateRawSync(e.data) : e.data;
    const name = Buffer.from(e.name);
    const crc = zlib.crc32(e.data);
    const method = e.deflate ? 8 : 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);

    let extra = Buffer.alloc(0);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(45, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    if (zip64) {
      central.writeUInt32LE(0xffffffff, 20);
      central.writeUInt32LE(0xffffffff, 24);
      central.writeUInt32LE(0xffffffff, 42);
      extra = Buffer.alloc(28);
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(e.data.length), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    } else {
      central.writeUInt32LE(body.length, 20);
      central.writeUInt32LE(e.data.length, 24);
      central.writeUInt32LE(offset, 42);
    }
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    centrals.push(central, name, extra);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const tail: Buffer[] = [];
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  if (zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
    eocd.writeUInt16LE(0xffff, 8);
    eocd.writeUInt16LE(0xffff, 10);
    eocd.writeUInt32LE(0xffffffff, 12);
    eocd.writeUInt32LE(0xffffffff, 16);
  } else {
    eocd.writeUInt16LE(entries.length, 8);
    eocd.writeUInt16LE(entries.length, 10);
    eocd.writeUInt32LE(cd.length, 12);
    eocd.writeUInt32LE(offset, 16);
  }
  return Buffer.concat([...locals, cd, ...tail, eocd]);
}

// ---------------------------------------------------------------------------

let dir: string;

/** Writes a torch.save-shaped zip: <prefix>/data.pkl, data/<key> blobs, byteorder, version. */
function writeBin(
  name: string,
  pkl: Buffer,
  blobs: Record<string, Buffer>,
  opts: { prefix?: string; byteorder?: string | null; zip64?: boolean; deflatePickle?: boolean; deflateBlobs?: boolean } = {},
): string {
  const prefix = opts.prefix ?? 'archive';
  const entries: ZipInput[] = [{ name: `${prefix}/data.pkl`, data: pkl, deflate: opts.deflatePickle }];
  if (opts.byteorder !== null) entries.push({ name: `${prefix}/byteorder`, data: Buffer.from(opts.byteorder ?? 'little') });
  for (const [key, data] of Object.entries(blobs)) entries.push({ name: `${prefix}/data/${key}`, data, deflate: opts.deflateBlobs });
  entries.push({ name: `${prefix}/version`, data: Buffer.from('3\n') });
  const file = path.join(dir, name);
  fs.writeFileSync(file, zipFile(entries, opts.zip64));
  return file;
}

const f32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The error `fn` throws; it must be a single line. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected an error');
}

/** The one-line error opening `file` gives. */
const openError = (file: string) => errorOf(() => openTorchBin(file));

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-bin-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the real torch.save checkpoint', () => {
  it('holds the same tensors as its safetensors twin, byte for byte', () => {
    const bin = openTorchBin(GOLDEN_BIN);
    const st = SafetensorsFile.open(GOLDEN_SAFETENSORS);
    try {
      expect([...bin.names()].sort()).toEqual([...st.names()].sort());
      expect(bin.names().length).toBeGreaterThan(10);
      for (const name of bin.names()) {
        const a = bin.read(name);
        const b = st.read(name);
        expect(bin.info(name)).toEqual({ dtype: b.dtype, shape: b.shape });
        expect(a.dtype).toBe(b.dtype);
        expect(a.shape).toEqual(b.shape);
        expect(Buffer.from(a.data).equals(Buffer.from(b.data)), name).toBe(true);
      }
    } finally {
      bin.close();
      st.close();
    }
  });

  it('uses ZIP64 end records, 64-byte-aligned stored entries and an arbitrary archive folder', () => {
    const zip = ZipReader.open(GOLDEN_BIN);
    try {
      const pkl = [...zip.entries.keys()].find((n) => n.endsWith('/data.pkl'));
      expect(pkl).toBe('pytorch_model/data.pkl');
      const blob = zip.entries.get('pytorch_model/data/0')!;
      expect(blob.method).toBe(0);
      expect(zip.dataOffset(blob) % 64).toBe(0);
    } finally {
      zip.close();
    }
  });

  it('info reads nothing and read reads only that tensor, positionally', () => {
    const bin = openTorchBin(GOLDEN_BIN);
    const spy = vi.spyOn(fs, 'readSync');
    try {
      const name = 'model.embed_tokens.weight';
      expect(bin.info(name)).toEqual({ dtype: 'F32', shape: [512, 64] });
      expect(spy).not.toHaveBeenCalled();
      bin.read(name);
      // readSync(fd, buffer, offset, length, position)
      const calls = spy.mock.calls as unknown[][];
      const bytes = calls.reduce((s, c) => s + Number(c[3]), 0);
      // The tensor (128 KiB) plus its local zip header and name.
      expect(bytes).toBeGreaterThanOrEqual(512 * 64 * 4);
      expect(bytes).toBeLessThan(512 * 64 * 4 + 200);
      for (const call of calls) expect(typeof call[4]).toBe('number');
    } finally {
      spy.mockRestore();
      bin.close();
    }
  });

  it('close() closes the file', () => {
    const bin = openTorchBin(GOLDEN_BIN);
    bin.close();
    expect(() => bin.read('model.embed_tokens.weight')).toThrow();
  });
});

describe('layouts torch writes', () => {
  it('reads float16 and bfloat16 storages as F16/BF16 bytes', () => {
    const values = [1, -2, 0.5, 384, 0, -0.25]; // exact in both formats
    const half = Buffer.from(f32ToF16Bits(new Float32Array(values)).buffer);
    const bf = Buffer.from(new Uint16Array(new Uint32Array(new Float32Array(values).buffer).map((x) => x >>> 16)).buffer);
    const file = writeBin(
      'halfs.bin',
      pickle(
        stateDict([
          ['h', { storage: 'HalfStorage', key: '0', numel: 6, size: [2, 3] }],
          ['b', { storage: 'BFloat16Storage', key: '1', numel: 6, size: [6] }],
        ]),
      ),
      { '0': half, '1': bf },
    );
    const bin = openTorchBin(file);
    try {
      expect(bin.names()).toEqual(['h', 'b']);
      const h = bin.read('h');
      expect(h.dtype).toBe('F16');
      expect(h.shape).toEqual([2, 3]);
      expect(Buffer.from(h.data).equals(half)).toBe(true);
      expect([...toFloat32(h)]).toEqual(values);
      const b = bin.read('b');
      expect(b.dtype).toBe('BF16');
      expect(Buffer.from(b.data).equals(bf)).toBe(true);
      expect([...toFloat32(b)]).toEqual(values);
    } finally {
      bin.close();
    }
  });

  it('materializes non-contiguous views (transposed, permuted, offset)', () => {
    const storage = range(24);
    const file = writeBin(
      'strided.bin',
      pickle(
        stateDict([
          // A 2×3 matrix stored row-major, seen as its 3×2 transpose.
          ['t', { storage: 'FloatStorage', key: '0', numel: 24, size: [3, 2], stride: [1, 3] }],
          // A (2,3,4) tensor permuted to (4,2,3).
          ['p', { storage: 'FloatStorage', key: '0', numel: 24, size: [4, 2, 3], stride: [1, 12, 4] }],
          // Every other element of a row, starting at element 13.
          ['s', { storage: 'FloatStorage', key: '0', numel: 24, offset: 13, size: [2, 2], stride: [4, 2] }],
          // A scalar and an empty tensor.
          ['scalar', { storage: 'FloatStorage', key: '0', numel: 24, offset: 7, size: [], stride: [] }],
          ['empty', { storage: 'FloatStorage', key: '0', numel: 24, offset: 99, size: [0, 5], stride: [5, 1] }],
        ]),
      ),
      { '0': f32(storage) },
    );
    const bin = openTorchBin(file);
    const values = (name: string) => [...toFloat32(bin.read(name))];
    try {
      expect(values('t')).toEqual([0, 3, 1, 4, 2, 5]);
      const permuted: number[] = [];
      for (let a = 0; a < 4; a++) for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) permuted.push(a + 12 * b + 4 * c);
      expect(values('p')).toEqual(permuted);
      expect(values('s')).toEqual([13, 15, 17, 19]);
      expect(bin.read('scalar').shape).toEqual([]);
      expect(values('scalar')).toEqual([7]);
      expect(bin.read('empty')).toEqual({ dtype: 'F32', shape: [0, 5], data: new Uint8Array(0) });
    } finally {
      bin.close();
    }
  });

  it('loads tensors sharing one storage (tied weights, and views at different offsets)', () => {
    const file = writeBin(
      'shared.bin',
      pickle(
        stateDict([
          ['model.embed_tokens.weight', { storage: 'FloatStorage', key: '0', numel: 12, size: [3, 4] }],
          ['lm_head.weight', { storage: 'FloatStorage', key: '0', numel: 12, size: [3, 4] }],
          ['first', { storage: 'FloatStorage', key: '0', numel: 12, offset: 0, size: [6] }],
          ['second', { storage: 'FloatStorage', key: '0', numel: 12, offset: 6, size: [2, 3] }],
        ]),
      ),
      { '0': f32(range(12)) },
    );
    const bin = openTorchBin(file);
    try {
      expect([...toFloat32(bin.read('lm_head.weight'))]).toEqual(range(12));
      expect(bin.read('lm_head.weight')).toEqual(bin.read('model.embed_tokens.weight'));
      expect([...toFloat32(bin.read('first'))]).toEqual(range(6));
      expect([...toFloat32(bin.read('second'))]).toEqual([6, 7, 8, 9, 10, 11]);
    } finally {
      bin.close();
    }
  });

  it('accepts one level of nesting under "state_dict" or "model"', () => {
    const inner = stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 2, size: [2] }]]);
    for (const key of ['state_dict', 'model']) {
      // A plain dict (MARK … DICT) with other, non-tensor entries beside it.
      const top = cat(MARK, str('epoch'), int(3), str(key), inner, str('note'), Buffer.from([0x4e]), [0x64]);
      const file = writeBin(`nested-${key}.bin`, pickle(top), { '0': f32([4, 5]) });
      const bin = openTorchBin(file);
      expect(bin.names()).toEqual(['w']);
      expect([...toFloat32(bin.read('w'))]).toEqual([4, 5]);
      bin.close();
    }
  });

  it('reads protocol-4 pickles, memo references, parameters, _metadata, ZIP64 and a deflated data.pkl', () => {
    // FRAME, STACK_GLOBAL, MEMOIZE/BINGET, _rebuild_parameter and a BUILD with
    // the `_metadata` that nn.Module.state_dict() attaches.
    const rebuild = cat(stackGlob('torch._utils', '_rebuild_tensor_v2'), [0x94]); // memo 0
    const w = tensor({ storage: 'FloatStorage', key: '0', numel: 4, size: [2, 2] }, rebuild);
    const b = tensor({ storage: 'FloatStorage', key: '1', numel: 2, size: [2] }, Buffer.from([0x68, 0]));
    const param = cat(glob('torch._utils', '_rebuild_parameter'), tuple(b, Buffer.from([0x88]), orderedDict()), REDUCE);
    const metadata = dictOf([[str(''), dictOf([[str('version'), int(1)]])]]);
    const body = cat(
      dictOf([
        [shortStr('linear.weight'), w],
        [str('linear.bias'), param],
      ]),
      [0x7d],
      MARK,
      str('_metadata'),
      metadata,
      SETITEMS,
      [0x62],
    );
    const frame = Buffer.alloc(9);
    frame[0] = 0x95;
    frame.writeBigUInt64LE(BigInt(body.length + 1), 1);
    const pkl = cat([0x80, 0x04], frame, body, [0x2e]);
    const file = writeBin(
      'proto4.bin',
      pkl,
      { '0': f32([1, 2, 3, 4]), '1': f32([5, 6]) },
      { prefix: 'my model', zip64: true, deflatePickle: true, byteorder: null },
    );
    const bin = openTorchBin(file);
    try {
      expect(bin.names()).toEqual(['linear.weight', 'linear.bias']);
      expect([...toFloat32(bin.read('linear.weight'))]).toEqual([1, 2, 3, 4]);
      expect([...toFloat32(bin.read('linear.bias'))]).toEqual([5, 6]);
    } finally {
      bin.close();
    }
  });
});

describe('refuses malicious pickles without running anything', () => {
  const marker = () => path.join(dir, 'pwned');
  const refusal = (file: string, qualname: string) => `${file}: refusing to load: the pickle references ${qualname}, which is not part of a tensor state_dict`;

  it.each([
    ['GLOBAL os.system', glob('os', 'system'), 'os.system'],
    ['GLOBAL posix.system', glob('posix', 'system'), 'posix.system'],
    ['GLOBAL __builtin__.exec', glob('__builtin__', 'exec'), '__builtin__.exec'],
    ['STACK_GLOBAL builtins.eval', stackGlob('builtins', 'eval'), 'builtins.eval'],
    ['an arbitrary class', glob('transformers.models.llama', 'LlamaForCausalLM'), 'transformers.models.llama.LlamaForCausalLM'],
  ])('%s', (_label, callable, qualname) => {
    const evil = cat(callable, tuple(str(`touch ${marker()}`)), REDUCE);
    // Reached as a whole pickle and hidden inside an otherwise valid state_dict.
    const whole = writeBin('evil.bin', pickle(evil), {});
    expect(openError(whole)).toBe(refusal(whole, qualname));
    const hidden = writeBin(
      'evil-hidden.bin',
      pickle(
        dictOf([
          [str('w'), tensor({ storage: 'FloatStorage', key: '0', numel: 1, size: [1] })],
          [str('x'), evil],
        ]),
      ),
      { '0': f32([1]) },
    );
    expect(openError(hidden)).toBe(refusal(hidden, qualname));
    expect(fs.existsSync(marker())).toBe(false);
  });

  it('refuses calls the allowlisted names do not make, unknown opcodes and odd BUILDs', () => {
    const cases: [Buffer, RegExp][] = [
      [cat(glob('torch', 'FloatStorage'), tuple(int(4)), REDUCE), /REDUCE on torch\.FloatStorage is not supported/],
      [cat(orderedDict(), [0x7d], MARK, str('__class__'), int(1), SETITEMS, [0x62]), /BUILD of a dict with a dict state is not supported/],
      [cat(glob('collections', 'OrderedDict'), tuple(str('x')), REDUCE), /OrderedDict\(\.\.\.\) with arguments/],
      [cat(str('x'), EMPTY_TUPLE, REDUCE), /REDUCE on a str/],
      [cat(Buffer.from('i'), Buffer.from('os\nsystem\n')), /unsupported pickle opcode 0x69 \('i'\)/],
      [cat(Buffer.from([0x8b])), /unsupported pickle opcode 0x8b/],
      [cat([0x68, 7]), /memo key 7 was never stored/],
    ];
    for (const [body, message] of cases) {
      const file = writeBin('bad-op.bin', pickle(body), {});
      const msg = openError(file);
      expect(msg.startsWith(`${file}: `)).toBe(true);
      expect(msg).toMatch(message);
    }
  });
});

describe('bad files', () => {
  const ok = () => writeBin('ok.bin', pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 4, size: [4] }]])), { '0': f32([1, 2, 3, 4]) });

  it('truncated files', () => {
    const whole = fs.readFileSync(GOLDEN_BIN);
    for (const keep of [10, whole.length >> 1, whole.length - 30]) {
      const file = path.join(dir, `truncated-${keep}.bin`);
      fs.writeFileSync(file, whole.subarray(0, keep));
      expect(openError(file)).toMatch(new RegExp(`^${file}: not a zip archive, or truncated`));
    }
    // A pickle cut short inside a valid zip.
    const pkl = pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 4, size: [4] }]]));
    const cut = writeBin('cut-pickle.bin', pkl.subarray(0, pkl.length - 20), { '0': f32([1, 2, 3, 4]) });
    expect(openError(cut)).toMatch(/malformed data\.pkl at byte \d+: truncated/);
  });

  it('not a zip, or a zip without data.pkl', () => {
    const junk = path.join(dir, 'junk.bin');
    fs.writeFileSync(junk, Buffer.alloc(1000, 7));
    expect(openError(junk)).toMatch(/not a zip archive/);
    const legacy = path.join(dir, 'legacy.bin');
    fs.writeFileSync(legacy, cat([0x80, 0x02, 0x8a, 0x0a], Buffer.alloc(100)));
    expect(openError(legacy)).toMatch(/legacy \(pre-PyTorch-1\.6\) torch\.save format/);
    const noPkl = path.join(dir, 'no-pkl.bin');
    fs.writeFileSync(noPkl, zipFile([{ name: 'archive/version', data: Buffer.from('3\n') }]));
    expect(openError(noPkl)).toBe(`${noPkl}: missing data.pkl: not a PyTorch (torch.save) zip checkpoint`);
  });

  it('a corrupted data.pkl fails its CRC', () => {
    const file = ok();
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf(Buffer.from('FloatStorage'));
    bytes[at] ^= 1;
    fs.writeFileSync(file, bytes);
    expect(openError(file)).toMatch(/entry "archive\/data\.pkl" fails its CRC-32 check/);
  });

  it('a zip whose directory points past the file', () => {
    const file = ok();
    const bytes = fs.readFileSync(file);
    bytes.writeUInt32LE(0x7fffffff, bytes.length - 6); // EOCD: central directory offset
    fs.writeFileSync(file, bytes);
    expect(openError(file)).toMatch(/corrupt or truncated zip: central directory/);
  });

  it('a storage blob shorter than the tensor needs', () => {
    const file = writeBin('short.bin', pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 4, size: [2, 2] }]])), { '0': f32([1, 2, 3]) });
    expect(openError(file)).toBe(`${file}: tensor "w": storage archive/data/0 holds 12 bytes but the tensor needs 16`);
    const missing = writeBin('missing.bin', pickle(stateDict([['w', { storage: 'FloatStorage', key: '5', numel: 4, size: [4] }]])), {});
    expect(openError(missing)).toBe(`${missing}: tensor "w": storage archive/data/5 is missing`);
  });

  it('a pickle bomb: more opcodes than any state_dict needs, refused before they pile up', () => {
    // A valid state_dict beside a list of MAX_PICKLE_OPCODES Nones: small deflated, and what 250 M of them does to V8 (a fatal error) is no place to stop.
    const inner = stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 1, size: [1] }]]);
    const junk = cat([0x5d], MARK, Buffer.alloc(MAX_PICKLE_OPCODES, 0x4e), [0x65]);
    const file = writeBin(
      'opcode-bomb.bin',
      pickle(cat(MARK, str('state_dict'), inner, str('junk'), junk, [0x64])),
      { '0': f32([1]) },
      { deflatePickle: true },
    );
    expect(fs.statSync(file).size).toBeLessThan(64 * 1024);
    expect(openError(file)).toMatch(new RegExp(`^${file}: malformed data\\.pkl at byte \\d+: more than ${MAX_PICKLE_OPCODES} opcodes`));
  });

  it('a zip bomb: a deflated storage that inflates past what its tensors use', () => {
    // 4 MiB of zeros (4 kB deflated) behind a 16-byte tensor: refused at open, naming the entry, before anything is inflated.
    const bomb = writeBin(
      'zip-bomb.bin',
      pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 4, size: [4] }]])),
      { '0': Buffer.alloc(4 << 20) },
      { deflateBlobs: true },
    );
    expect(fs.statSync(bomb).size).toBeLessThan(64 * 1024);
    expect(openError(bomb)).toBe(`${bomb}: deflated storage archive/data/0 inflates to 4194304 bytes, more than the 16 its tensors use`);
    // A deflated storage of the size its tensors use still loads (a re-zipped checkpoint).
    const fine = writeBin(
      'deflated.bin',
      pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 4, size: [4] }]])),
      { '0': f32([1, 2, 3, 4]) },
      { deflateBlobs: true },
    );
    const bin = openTorchBin(fine);
    try {
      expect([...toFloat32(bin.read('w'))]).toEqual([1, 2, 3, 4]);
    } finally {
      bin.close();
    }
  });

  it('a top level that is not a state_dict of tensors', () => {
    const w = tensor({ storage: 'FloatStorage', key: '0', numel: 1, size: [1] });
    const list = writeBin('list.bin', pickle(cat([0x5d], MARK, w, [0x65])), { '0': f32([1]) });
    expect(openError(list)).toBe(`${list}: the pickle is not a state_dict of tensors (its top level is a list)`);
    const mixed = writeBin(
      'mixed.bin',
      pickle(
        dictOf([
          [str('w'), w],
          [str('step'), int(10)],
        ]),
      ),
      { '0': f32([1]) },
    );
    expect(openError(mixed)).toBe(`${mixed}: the pickle is not a state_dict of tensors ("step" is a int)`);
    const deep = writeBin('deep.bin', pickle(dictOf([[str('state_dict'), dictOf([[str('model'), dictOf([[str('w'), w]])]])]])), { '0': f32([1]) });
    expect(openError(deep)).toMatch(/is not a state_dict of tensors \("state_dict" is a dict\)/);
  });

  it('unknown storage types and big-endian files', () => {
    const complex = writeBin('complex.bin', pickle(stateDict([['w', { storage: 'ComplexFloatStorage', key: '0', numel: 1, size: [1] }]])), {
      '0': f32([1, 2]),
    });
    expect(openError(complex)).toBe(`${complex}: refusing to load: the pickle references torch.ComplexFloatStorage, which is not part of a tensor state_dict`);
    // A storage "type" that is not a storage class at all.
    const pid = cat(MARK, str('storage'), glob('collections', 'OrderedDict'), str('0'), str('cpu'), int(1), TUPLE, [0x51]);
    const odd = writeBin('odd-storage.bin', pickle(pid), { '0': f32([1]) });
    expect(openError(odd)).toMatch(/unknown storage type collections\.OrderedDict/);
    const big = writeBin(
      'big.bin',
      pickle(stateDict([['w', { storage: 'FloatStorage', key: '0', numel: 1, size: [1] }]])),
      { '0': f32([1]) },
      { byteorder: 'big' },
    );
    expect(openError(big)).toBe(`${big}: big-endian checkpoints are not supported`);
  });
});
