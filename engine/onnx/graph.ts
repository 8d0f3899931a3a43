// A small builder for ONNX graphs: named inputs, outputs and initializers, and
// `op()` to append a node and get its output names. Node and value names carry
// a scope (e.g. "layers.3/attn") so profiles and errors point at the model.
import { DataType, encodeModel, type AttrValue, type DeferredBytes, type NodeDef, type TensorDef, type ValueInfoDef } from './proto';

/** Initializers this large go to the external weights buffer. */
const EXTERNAL_MIN_BYTES = 1024;

export const MS_DOMAIN = 'com.microsoft';

export const attr = {
  int: (value: number): AttrValue => ({ type: 'int', value }),
  float: (value: number): AttrValue => ({ type: 'float', value }),
  string: (value: string): AttrValue => ({ type: 'string', value }),
  ints: (value: number[]): AttrValue => ({ type: 'ints', value }),
};

export interface OpOptions {
  domain?: string;
  /** Output names ('' for an optional output not wanted); default: one fresh name. */
  outputs?: string[];
  /** Number of fresh outputs (when `outputs` is not given). */
  numOutputs?: number;
}

export class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly initializers: TensorDef[] = [];
  readonly inputs: ValueInfoDef[] = [];
  readonly outputs: ValueInfoDef[] = [];
  /** Prefix of the names of nodes and values made now. */
  scope = '';
  private readonly used = new Map<string, number>();
  private readonly constants = new Map<string, string>();

  constructor(readonly name: string) {}

  /** A new value name under the current scope. */
  fresh(base: string): string {
    const full = this.scope ? `${this.scope}/${base}` : base;
    const n = this.used.get(full) ?? 0;
    this.used.set(full, n + 1);
    return n === 0 ? full : `${full}_${n}`;
  }

  input(name: string, dataType: DataType, shape: (number | string)[]): string {
    this.inputs.push({ name, dataType, shape });
    return name;
  }

  /** Declares `name` (produced by some node) a graph output. */
  output(name: string, dataType: DataType, shape: (number | string)[]): void {
    this.outputs.push({ name, dataType, shape });
  }

  initializer(name: string, dataType: DataType, dims: number[], data: Uint8Array | DeferredBytes): string {
    this.initializers.push({ name, dataType, dims, data });
    return name;
  }

  /** A float32 initializer from values. */
  floats(name: string, dims: number[], values: Float32Array): string {
    return this.initializer(name, DataType.FLOAT, dims, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }

  /** A constant (1-D, or a scalar with `scalar`), one initializer shared by every use of the same values. */
  constant(dataType: typeof DataType.FLOAT | typeof DataType.INT64 | typeof DataType.UINT8, values: number[], scalar = false): string {
    const key = `${dataType}:${scalar ? 's' : 'v'}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      const data =
        dataType === DataType.INT64
          ? new BigInt64Array(values.map((v) => BigInt(v)))
          : dataType === DataType.FLOAT
            ? Float32Array.from(values)
            : Uint8Array.from(values);
      this.initializer(name, dataType, scalar ? [] : [values.length], new Uint8Array(data.buffer));
      this.constants.set(key, name);
    }
    return name;
  }

  /** An int64 constant (a 1-D shape, axes, starts…). */
  int64(values: number[], scalar = false): string {
    return this.constant(DataType.INT64, values, scalar);
  }

  /** A float32 scalar constant. */
  float(value: number): string {
    return this.constant(DataType.FLOAT, [value], true);
  }

  /** Appends a node; returns its output names. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: OpOptions = {}): string[] {
    const name = this.fresh(opType);
    const outputs = opts.outputs ?? Array.from({ length: opts.numOutputs ?? 1 }, (_, i) => (i === 0 ? name : `${name}:${i}`));
    this.nodes.push({ opType, domain: opts.domain ?? '', name, inputs, outputs, attrs });
    return outputs;
  }

  /** Appends a node with one output; returns its name. */
  op1(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.op(opType, inputs, attrs, { domain })[0];
  }

  /**
   * Serializes the graph: the model itself, and its large initializers in one
   * buffer that the model refers to as the external file `weightsFile`
   * (ONNX Runtime reads them from memory: no intermediate copies, and one
   * allocation to free afterwards). Weights are written once, into that buffer.
   * When all initializers total at most `inlineUpTo` bytes, they stay inside
   * the model instead (and the buffer is empty).
   */
  encode(opsets: { domain: string; version: number }[], weightsFile: string, inlineUpTo = 0): { model: Uint8Array; weights: Uint8Array } {
    const inline = this.initializers.reduce((n, t) => n + t.data.byteLength, 0) <= inlineUpTo;
    let size = 0;
    const placed = this.initializers.map((t): TensorDef => {
      if (inline || t.data.byteLength < EXTERNAL_MIN_BYTES) return t;
      const offset = Math.ceil(size / 64) * 64; // aligned for any element type
      size = offset + t.data.byteLength;
      return { ...t, external: { location: weightsFile, offset, length: t.data.byteLength } };
    });
    const weights = new Uint8Array(size);
    for (const t of placed) {
      if (!t.external) continue;
      const dst = weights.subarray(t.external.offset, t.external.offset + t.external.length);
      if (t.data instanceof Uint8Array) dst.set(t.data);
      else t.data.write(dst);
    }
    const graph = { name: this.name, nodes: this.nodes, initializers: placed, inputs: this.inputs, outputs: this.outputs };
    return { model: encodeModel({ graph, opsets, producer: 'mobilellm-workbench' }), weights };
  }
}
