// The GGUF container (version 3, ggml/include/gguf.h in llama.cpp), little-endian:
//
//   "GGUF"  u32 version  i64 tensor count  i64 metadata count
//   metadata × count:  string key, i32 value type, value
//                      (an array: i32 item type, u64 length, the items)
//   tensor info × count:  string name, u32 dims, i64 ne[dims] (ne[0] varies fastest),
//                         i32 ggml type, u64 offset into the data section
//   padding to `general.alignment` (default 32), then the data section, each
//   tensor starting at an aligned offset.
//
// Strings are a u64 byte length and UTF-8 without a terminator; bools one byte.
// A [out, in] weight of a Hugging Face checkpoint is ne = [in, out].
import fs from 'node:fs';
import { writeFileAtomic } from '../io/atomic';
import { ggmlTypeBytes, GGML_TYPES, type GgmlType } from './gguf-quant';

const MAGIC = 'GGUF';
const VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types, by their ids in the file. */
const VALUE_TYPES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'] as const;
export type GgufScalarType = Exclude<(typeof VALUE_TYPES)[number], 'array'>;
type Scalar = number | bigint | boolean | string;

export type GgufValue = { type: GgufScalarType; value: Scalar } | { type: 'array'; itemType: GgufScalarType; value: Scalar[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] is the fastest-varying dimension. */
  ne: number[];
  type: GgmlType;
}

export interface GgufTensor extends GgufTensorInfo {
  /** The tensor's bytes in `type`'s layout, made when the writer reaches it. */
  data: () => Uint8Array;
}

const FIXED_BYTES: Record<Exclude<GgufScalarType, 'string'>, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  u64: 8,
  i64: 8,
  f64: 8,
};
/** Bounds a reader keeps to so that a damaged header cannot make it allocate without limit. */
const MAX_COUNT = 1 << 24;
const MAX_STRING = 1 << 26;
const MAX_DIMS = 4;

export const tensorBytes = (t: GgufTensorInfo): number => ggmlTypeBytes(t.type, t.ne, t.name);
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

// ------------------------------------------------------------ writing

class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  fixed(type: Exclude<GgufScalarType, 'string'>, v: Scalar): void {
    const b = Buffer.alloc(FIXED_BYTES[type]);
    if (type === 'u8') b.writeUInt8(Number(v));
    else if (type === 'i8') b.writeInt8(Number(v));
    else if (type === 'u16') b.writeUInt16LE(Number(v));
    else if (type === 'i16') b.writeInt16LE(Number(v));
    else if (type === 'u32') b.writeUInt32LE(Number(v));
    else if (type === 'i32') b.writeInt32LE(Number(v));
    else if (type === 'f32') b.writeFloatLE(Number(v));
    else if (type === 'bool') b.writeUInt8(v ? 1 : 0);
    else if (type === 'u64') b.writeBigUInt64LE(BigInt(v));
    else if (type === 'i64') b.writeBigInt64LE(BigInt(v));
    else b.writeDoubleLE(Number(v));
    this.push(b);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.fixed('u64', bytes.length);
    this.push(bytes);
  }
  scalar(type: GgufScalarType, v: Scalar): void {
    if (type === 'string') this.string(String(v));
    else this.fixed(type, v);
  }
  zeros(n: number): void {
    if (n > 0) this.push(Buffer.alloc(n));
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** The header of a GGUF file (everything before the data section, padding included) and each tensor's offset. */
export function ggufHeader(metadata: Map<string, GgufValue>, tensors: GgufTensorInfo[]): { header: Buffer; offsets: number[]; alignment: number } {
  const alignValue = metadata.get('general.alignment');
  const alignment = alignValue ? Number(alignValue.value) : GGUF_DEFAULT_ALIGNMENT;
  const w = new ByteWriter();
  for (const c of MAGIC) w.fixed('u8', c.charCodeAt(0));
  w.fixed('u32', VERSION);
  w.fixed('i64', tensors.length);
  w.fixed('i64', metadata.size);
  for (const [key, v] of metadata) {
    w.string(key);
    w.fixed('i32', VALUE_TYPES.indexOf(v.type));
    if (v.type === 'array') {
      w.fixed('i32', VALUE_TYPES.indexOf(v.itemType));
      w.fixed('u64', v.value.length);
      for (const item of v.value) w.scalar(v.itemType, item);
    } else {
      w.scalar(v.type, v.value);
    }
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.fixed('u32', t.ne.length);
    for (const d of t.ne) w.fixed('i64', d);
    w.fixed('i32', GGML_TYPES[t.type].id);
    w.fixed('u64', offset);
    offsets.push(offset);
    offset = align(offset + tensorBytes(t), alignment);
  }
  w.zeros(align(w.length, alignment) - w.length);
  return { header: w.bytes(), offsets, alignment };
}

/** Writes a GGUF file atomically, making each tensor's data only when it is written; returns the bytes written. */
export function writeGguf(file: string, metadata: Map<string, GgufValue>, tensors: GgufTensor[]): number {
  const { header, alignment } = ggufHeader(metadata, tensors);
  return writeFileAtomic(
    file,
    (function* () {
      yield header;
      for (const t of tensors) {
        const data = t.data();
        const want = tensorBytes(t);
        if (data.byteLength !== want) throw new Error(`${file}: tensor "${t.name}" has ${data.byteLength} bytes, its type and shape need ${want}`);
        yield data;
        const pad = align(want, alignment) - want;
        if (pad > 0) yield new Uint8Array(pad);
      }
    })(),
  );
}

// ------------------------------------------------------------ reading

/** Reads the header from a file descriptor a window at a time. */
class ByteReader {
  private buf = Buffer.alloc(0);
  private start = 0;
  pos = 0;
  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly file: string,
  ) {}
  private need(n: number, what: string): Buffer {
    if (this.pos + n > this.size) throw new Error(`${this.file}: truncated GGUF header (reading ${what} at byte ${this.pos})`);
    if (this.pos < this.start || this.pos + n > this.start + this.buf.length) {
      const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
      this.buf = Buffer.alloc(len);
      fs.readSync(this.fd, this.buf, 0, len, this.pos);
      this.start = this.pos;
    }
    const at = this.pos - this.start;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }
  fixed(type: Exclude<GgufScalarType, 'string'>, what: string): number | bigint | boolean {
    const b = this.need(FIXED_BYTES[type], what);
    if (type === 'u8') return b.readUInt8();
    if (type === 'i8') return b.readInt8();
    if (type === 'u16') return b.readUInt16LE();
    if (type === 'i16') return b.readInt16LE();
    if (type === 'u32') return b.readUInt32LE();
    if (type === 'i32') return b.readInt32LE();
    if (type === 'f32') return b.readFloatLE();
    if (type === 'bool') return b.readUInt8() !== 0;
    if (type === 'u64') return b.readBigUInt64LE();
    if (type === 'i64') return b.readBigInt64LE();
    return b.readDoubleLE();
  }
  /** A u64/i64 count or size, refused above `max`. */
  count(type: 'u64' | 'i64' | 'u32', max: number, what: string): number {
    const v = BigInt(this.fixed(type, what) as number | bigint);
    if (v < 0n || v > BigInt(max)) throw new Error(`${this.file}: ${what} is ${v}, over the limit of ${max}`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.count('u64', MAX_STRING, `the length of ${what}`);
    return this.need(n, what).toString('utf8');
  }
  scalar(type: GgufScalarType, what: string): Scalar {
    return type === 'string' ? this.string(what) : this.fixed(type, what);
  }
  valueType(what: string): (typeof VALUE_TYPES)[number] {
    const id = this.fixed('i32', what) as number;
    const type = VALUE_TYPES[id];
    if (type === undefined) throw new Error(`${this.file}: ${what} has unknown value type ${id}`);
    return type;
  }
}

export interface GgufTensorEntry extends GgufTensorInfo {
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  bytes: number;
}

/** A GGUF file opened for reading: its metadata and tensor table, tensor data read on demand. */
export class GgufFile {
  private constructor(
    readonly path: string,
    private fd: number | null,
    readonly version: number,
    readonly metadata: Map<string, GgufValue>,
    readonly tensors: Map<string, GgufTensorEntry>,
  ) {}

  static open(file: string): GgufFile {
    if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
    const fd = fs.openSync(file, 'r');
    try {
      return GgufFile.parse(file, fd);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private static parse(file: string, fd: number): GgufFile {
    const size = fs.fstatSync(fd).size;
    const r = new ByteReader(fd, size, file);
    const magic = [0, 1, 2, 3].map(() => String.fromCharCode(r.fixed('u8', 'the magic') as number)).join('');
    if (magic !== MAGIC) throw new Error(`${file}: not a GGUF file (starts with ${JSON.stringify(magic)})`);
    const version = r.fixed('u32', 'the version') as number;
    if (version !== 2 && version !== 3) throw new Error(`${file}: GGUF version ${version} is not supported (only 2 and 3)`);
    const nTensors = r.count('i64', MAX_COUNT, 'the tensor count');
    const nKv = r.count('i64', MAX_COUNT, 'the metadata count');
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = r.string(`metadata key ${i}`);
      const type = r.valueType(`metadata "${key}"`);
      if (type === 'array') {
        const itemType = r.valueType(`metadata "${key}"'s items`);
        if (itemType === 'array') throw new Error(`${file}: metadata "${key}" is an array of arrays (not supported)`);
        const n = r.count('u64', MAX_COUNT, `the length of metadata "${key}"`);
        const value: Scalar[] = new Array(n);
        for (let k = 0; k < n; k++) value[k] = r.scalar(itemType, `metadata "${key}"[${k}]`);
        metadata.set(key, { type, itemType, value });
      } else {
        metadata.set(key, { type, value: r.scalar(type, `metadata "${key}"`) });
      }
    }
    const alignValue = metadata.get('general.alignment');
    const alignment = alignValue && alignValue.type !== 'array' ? Number(alignValue.value) : GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      throw new Error(`${file}: general.alignment ${alignment} is not a power of two`);
    }
    const infos: (GgufTensorInfo & { rel: number })[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = r.string(`tensor name ${i}`);
      const dims = r.count('u32', MAX_DIMS, `the dimension count of tensor "${name}"`);
      const ne: number[] = [];
      for (let d = 0; d < dims; d++) ne.push(r.count('i64', Number.MAX_SAFE_INTEGER, `dimension ${d} of tensor "${name}"`));
      const typeId = r.fixed('i32', `the type of tensor "${name}"`) as number;
      const type = (Object.keys(GGML_TYPES) as GgmlType[]).find((t) => GGML_TYPES[t].id === typeId);
      if (!type) throw new Error(`${file}: tensor "${name}" has ggml type ${typeId}; only F32, F16, Q8_0 and Q4_0 are supported`);
      const rel = r.count('u64', Number.MAX_SAFE_INTEGER, `the offset of tensor "${name}"`);
      if (rel % alignment !== 0) throw new Error(`${file}: tensor "${name}" starts at ${rel}, not a multiple of the alignment ${alignment}`);
      infos.push({ name, ne, type, rel });
    }
    const dataStart = align(r.pos, alignment);
    const tensors = new Map<string, GgufTensorEntry>();
    const spans: [number, number, string][] = [];
    for (const { rel, ...info } of infos) {
      if (tensors.has(info.name)) throw new Error(`${file}: tensor "${info.name}" is listed twice`);
      const bytes = tensorBytes(info);
      const offset = dataStart + rel;
      if (offset + bytes > size) throw new Error(`${file}: tensor "${info.name}" ends at byte ${offset + bytes}, past the end of the file (${size})`);
      tensors.set(info.name, { ...info, offset, bytes });
      spans.push([offset, offset + bytes, info.name]);
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1]) throw new Error(`${file}: tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap`);
    }
    return new GgufFile(file, fd, version, metadata, tensors);
  }

  /** A scalar metadata value; `undefined` when absent. Throws naming the key when it is an array. */
  scalar(key: string): Scalar | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return undefined;
    if (v.type === 'array') throw new Error(`${this.path}: metadata "${key}" is an array, expected one value`);
    return v.value;
  }

  /** An array metadata value; `undefined` when absent. */
  array(key: string): Scalar[] | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return undefined;
    if (v.type !== 'array') throw new Error(`${this.path}: metadata "${key}" is one value, expected an array`);
    return v.value;
  }

  /** The raw bytes of tensor `name`. */
  read(name: string): Uint8Array {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor "${name}"`);
    if (this.fd === null) throw new Error(`${this.path}: file is closed`);
    const out = new Uint8Array(t.bytes);
    fs.readSync(this.fd, out, 0, t.bytes, t.offset);
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
