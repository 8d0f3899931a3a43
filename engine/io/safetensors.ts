// safetensors: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}},
// then the tensor bytes. Every offset is validated before anything is read:
// bounds, overlap, dtype × shape = byte length, and a cap on the header size.
import fs from 'node:fs';
import { DTYPE_BYTES, isDType, numel, type DType, type RawTensor } from './raw-tensor';
import { writeFileAtomic } from './atomic';
import type { TensorSource } from './tensor-source';
import { printable } from '../errors';

/** Same cap as the reference implementation (100 MB of JSON). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export class SafetensorsFile implements TensorSource {
  readonly entries = new Map<string, TensorEntry>();
  readonly metadata: Record<string, string> = {};
  private readonly dataStart: number;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly byteLength: number,
    headerLen: number,
  ) {
    this.dataStart = 8 + headerLen;
  }

  static open(file: string): SafetensorsFile {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      // printable: the message may quote the header (JSON.parse's does, newlines and all).
      const fail = (msg: string): never => {
        throw new Error(printable(`${file}: ${msg}`));
      };
      if (size < 8) fail(`truncated safetensors file (${size} bytes, no header length)`);
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const headerLen64 = lenBuf.readBigUInt64LE(0);
      if (headerLen64 > BigInt(MAX_HEADER_BYTES)) fail(`safetensors header of ${headerLen64} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      const headerLen = Number(headerLen64);
      if (8 + headerLen > size) fail(`truncated safetensors file: header needs ${headerLen} bytes, file has ${size - 8}`);
      const headerBuf = Buffer.alloc(headerLen);
      fs.readSync(fd, headerBuf, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (e) {
        fail(`malformed safetensors header (not JSON: ${(e as Error).message})`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('malformed safetensors header (not a JSON object)');
      const st = new SafetensorsFile(file, fd, size, headerLen);
      const dataLen = size - 8 - headerLen;
      for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') {
          if (typeof value !== 'object' || value === null) fail('malformed __metadata__ (not an object)');
          for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
            if (typeof v !== 'string') fail(`malformed __metadata__: value of "${k}" is not a string`);
            st.metadata[k] = v as string;
          }
          continue;
        }
        st.entries.set(name, validateEntry(file, name, value, dataLen));
      }
      // Tensors must not overlap (the format also asks that they tile the buffer; we only require no overlap).
      const sorted = [...st.entries.entries()].sort((a, b) => a[1].begin - b[1].begin);
      for (let i = 1; i < sorted.length; i++) {
        const [prevName, prev] = sorted[i - 1];
        const [name, cur] = sorted[i];
        if (cur.begin < prev.end) fail(`tensor "${name}" overlaps tensor "${prevName}" (bytes ${cur.begin} < ${prev.end})`);
      }
      return st;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): { dtype: DType; shape: number[] } {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no tensor "${name}"`);
    return { dtype: e.dtype, shape: e.shape };
  }

  read(name: string): RawTensor {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no tensor "${name}"`);
    const data = new Uint8Array(e.end - e.begin);
    let off = 0;
    while (off < data.byteLength) {
      const n = fs.readSync(this.fd, data, off, data.byteLength - off, this.dataStart + e.begin + off);
      if (n === 0) throw new Error(`${this.path}: truncated while reading tensor "${name}"`);
      off += n;
    }
    return { dtype: e.dtype, shape: e.shape, data };
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function validateEntry(file: string, name: string, value: unknown, dataLen: number): TensorEntry {
  const fail = (msg: string): never => {
    throw new Error(printable(`${file}: tensor "${name}": ${msg}`));
  };
  if (typeof value !== 'object' || value === null) fail('header entry is not an object');
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof v.dtype !== 'string' || !isDType(v.dtype)) fail(`unknown dtype ${JSON.stringify(v.dtype)}`);
  const dtype = v.dtype as DType;
  if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`malformed shape ${JSON.stringify(v.shape)}`);
  const shape = v.shape as number[];
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0))
    fail(`malformed data_offsets ${JSON.stringify(offs)}`);
  const [begin, end] = offs as number[];
  if (begin > end) fail(`data_offsets [${begin}, ${end}] are reversed`);
  if (end > dataLen) fail(`data_offsets [${begin}, ${end}] run past the end of the file (data is ${dataLen} bytes; truncated file?)`);
  const expected = numel(shape) * DTYPE_BYTES[dtype];
  if (end - begin !== expected) fail(`holds ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
  return { dtype, shape, begin, end };
}

/** Reads every tensor of a file. */
export function readSafetensors(file: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const st = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, RawTensor>();
    for (const name of st.names()) tensors.set(name, st.read(name));
    return { tensors, metadata: st.metadata };
  } finally {
    st.close();
  }
}

/** Header + padding bytes of a safetensors file holding tensors of these dtypes and shapes, in order. */
export function safetensorsHeader(tensors: Iterable<[string, { dtype: DType; shape: number[] }]>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = numel(t.shape) * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // align data to 8 bytes, as HF does
  const out = Buffer.alloc(8 + Buffer.byteLength(json));
  out.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  out.write(json, 8, 'utf8');
  return out;
}

/** Writes a safetensors file atomically. Returns its size in bytes. */
export function writeSafetensors(file: string, tensors: Map<string, RawTensor> | [string, RawTensor][], metadata?: Record<string, string>): number {
  const list = tensors instanceof Map ? [...tensors.entries()] : tensors;
  for (const [name, t] of list) {
    const bytes = numel(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) throw new Error(`tensor "${name}": ${t.data.byteLength} bytes for ${t.dtype}${JSON.stringify(t.shape)} (needs ${bytes})`);
  }
  const head = safetensorsHeader(list, metadata);
  return writeFileAtomic(file, [head, ...list.map(([, t]) => t.data)]);
}
