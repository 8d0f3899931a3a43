// The ONNX model format is protocol buffers (onnx/onnx.proto3). We write the
// few messages a model needs — ModelProto, GraphProto, NodeProto, TensorProto,
// ValueInfoProto, AttributeProto — with the wire format's two encodings we use:
// varints and length-delimited fields.
//
// Encoding is two-pass: a message is a list of parts (small encoded chunks
// and byte blobs) whose sizes are known up front; `encodeModel` allocates the
// final buffer once and then writes each part into place. Large initializers
// are usually not in the model at all but in an external weights buffer
// (TensorProto.external_data), see GraphBuilder.encode.

/** ONNX TensorProto.DataType values. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

/** Bytes that are produced only when the model is serialized. */
export interface DeferredBytes {
  byteLength: number;
  /** Writes exactly byteLength bytes into `dst`. */
  write(dst: Uint8Array): void;
}

export interface TensorDef {
  name: string;
  dataType: DataType;
  dims: number[];
  /** Little-endian raw_data. */
  data: Uint8Array | DeferredBytes;
  /** Stored outside the model instead: bytes [offset, offset + length) of the external file `location`. */
  external?: { location: string; offset: number; length: number };
}

export type AttrValue =
  { type: 'int'; value: number } | { type: 'float'; value: number } | { type: 'string'; value: string } | { type: 'ints'; value: number[] };

export interface NodeDef {
  opType: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

/** A graph input or output: element type and shape (a string is a symbolic dimension). */
export interface ValueInfoDef {
  name: string;
  dataType: DataType;
  shape: (number | string)[];
}

export interface GraphDef {
  name: string;
  nodes: NodeDef[];
  initializers: TensorDef[];
  inputs: ValueInfoDef[];
  outputs: ValueInfoDef[];
}

export interface ModelDef {
  graph: GraphDef;
  opsets: { domain: string; version: number }[];
  producer: string;
}

/** ONNX IR version 10 (ONNX 1.16+), understood by ONNX Runtime 1.18 and later. */
const IR_VERSION = 10;

type Part = Uint8Array | DeferredBytes;

/** One protobuf message under construction. */
class Message {
  readonly parts: Part[] = [];
  size = 0;
  private scratch: number[] = [];

  private flush(): void {
    if (!this.scratch.length) return;
    this.parts.push(Uint8Array.from(this.scratch));
    this.scratch = [];
  }

  private varint(v: number): void {
    // Non-negative values up to 2^53; negative int64 values are written as 10-byte two's complement.
    if (v < 0) {
      let big = BigInt.asUintN(64, BigInt(v));
      while (big >= 0x80n) {
        this.scratch.push(Number(big & 0x7fn) | 0x80);
        big >>= 7n;
      }
      this.scratch.push(Number(big));
      this.size += 10;
      return;
    }
    do {
      let byte = v % 128;
      v = Math.floor(v / 128);
      if (v > 0) byte |= 0x80;
      this.scratch.push(byte);
      this.size++;
    } while (v > 0);
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  int(field: number, v: number): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.scratch.push(...b);
    this.size += 4;
    return this;
  }

  bytes(field: number, data: Part): this {
    this.tag(field, 2);
    this.varint(data.byteLength);
    this.flush();
    this.parts.push(data);
    this.size += data.byteLength;
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Message): this {
    m.flush();
    this.tag(field, 2);
    this.varint(m.size);
    this.flush();
    for (const part of m.parts) this.parts.push(part); // not push(...parts): a large graph has more parts than a call takes arguments
    this.size += m.size;
    return this;
  }

  /** Packed repeated int64. */
  packedInts(field: number, values: number[]): this {
    const inner = new Message();
    for (const v of values) inner.varint(v);
    return this.message(field, inner);
  }

  finish(): this {
    this.flush();
    return this;
  }
}

function tensorProto(t: TensorDef): Message {
  const m = new Message();
  if (t.dims.length) m.packedInts(1, t.dims);
  m.int(2, t.dataType);
  m.string(8, t.name);
  if (t.external) {
    const { location, offset, length } = t.external;
    for (const [k, v] of [
      ['location', location],
      ['offset', String(offset)],
      ['length', String(length)],
    ])
      m.message(13, new Message().string(1, k).string(2, v));
    m.int(14, 1); // DataLocation.EXTERNAL
  } else m.bytes(9, t.data);
  return m;
}

function attributeProto(name: string, a: AttrValue): Message {
  // AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, INTS 7
  const m = new Message().string(1, name);
  switch (a.type) {
    case 'float':
      return m.float(2, a.value).int(20, 1);
    case 'int':
      return m.int(3, a.value).int(20, 2);
    case 'string':
      return m.string(4, a.value).int(20, 3);
    case 'ints':
      return m.packedInts(8, a.value).int(20, 7);
  }
}

function nodeProto(n: NodeDef): Message {
  const m = new Message();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, n.name);
  m.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs)) m.message(5, attributeProto(k, v));
  if (n.domain) m.string(7, n.domain);
  return m;
}

function valueInfoProto(v: ValueInfoDef): Message {
  const shape = new Message();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, v.dataType).message(2, shape);
  return new Message().string(1, v.name).message(2, new Message().message(1, tensorType));
}

function graphProto(g: GraphDef): Message {
  const m = new Message();
  for (const n of g.nodes) m.message(1, nodeProto(n));
  m.string(2, g.name);
  for (const t of g.initializers) m.message(5, tensorProto(t));
  for (const v of g.inputs) m.message(11, valueInfoProto(v));
  for (const v of g.outputs) m.message(12, valueInfoProto(v));
  return m;
}

/** Serializes a model: one allocation of the final size; deferred bytes are written straight into it. */
export function encodeModel(model: ModelDef): Uint8Array {
  const m = new Message().int(1, IR_VERSION).string(2, model.producer);
  m.message(7, graphProto(model.graph));
  for (const o of model.opsets) m.message(8, new Message().string(1, o.domain).int(2, o.version));
  m.finish();
  const out = new Uint8Array(m.size);
  let at = 0;
  for (const p of m.parts) {
    if (p instanceof Uint8Array) out.set(p, at);
    else p.write(out.subarray(at, at + p.byteLength));
    at += p.byteLength;
  }
  return out;
}
