// PyTorch `pytorch_model.bin` (torch.save's zip format, PyTorch >= 1.6) read
// without Python and without ever running pickled code.
//
// The zip holds `<archive>/data.pkl`, a pickle of the state_dict in which each
// tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`
// and each storage is a persistent id `('storage', torch.FloatStorage, key,
// location, numel)` whose bytes are the zip entry `<archive>/data/<key>`.
//
// The pickle is interpreted by a restricted unpickler, in the spirit of
// Netron's: it knows only the opcodes a state_dict needs, and GLOBAL /
// STACK_GLOBAL may only name an allowlisted handful of callables (OrderedDict,
// the tensor/parameter rebuild functions and the storage classes), which it
// never "imports" but recognises by name and reimplements. Anything else —
// `os.system`, `builtins.eval`, an arbitrary class — is refused the moment it
// is named. Tensor data is not read at open time; `read` fetches just the
// bytes of one tensor with positional reads.
import fs from 'node:fs';
import { DTYPE_BYTES, type DType, type RawTensor } from './raw-tensor';
import type { TensorSource } from './tensor-source';
import { METHOD_DEFLATE, ZipReader, type ZipEntry } from './zip';

// A hostile file must not make us allocate what no state_dict needs. torch
// writes ~30 opcodes and ~150 bytes of data.pkl per tensor, and the largest
// state_dicts hold tens of thousands of tensors, so these bounds are two
// orders of magnitude above any real checkpoint:
/** data.pkl is inflated whole before it is read. */
const MAX_PICKLE_BYTES = 64 * 1024 * 1024;
/**
 * Opcodes executed. Every opcode adds at most one value to the stack, the memo
 * or a container, so this also bounds the memo and every container; without
 * it 250 M one-byte NONEs (1 MB deflated) grow the stack until V8 aborts.
 */
export const MAX_PICKLE_OPCODES = 4 * 1024 * 1024;
/**
 * torch never compresses storages; a re-zipped file may, and a deflated
 * storage is inflated whole to read a tensor of it. Besides this cap, each is
 * refused at open if it inflates to more than its tensors use.
 */
const MAX_INFLATED_STORAGE_BYTES = 2 ** 31 - 1;

// ---------------------------------------------------------------------------
// Values the restricted unpickler can build. Python ints are JS numbers (or
// bigints past 2^53), str is string, list is an array, None is null.

class PyTuple {
  constructor(readonly items: Value[]) {}
}
class PyFloat {
  constructor(readonly value: number) {}
}
type DictKey = string | number | bigint | boolean | null;
/** dict and collections.OrderedDict (JS Maps keep insertion order, like both). */
class PyDict {
  readonly map = new Map<DictKey, Value>();
}
/** A name from GLOBAL/STACK_GLOBAL that passed the allowlist; never resolved to code. */
class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}
/** A storage persistent id: its bytes are the zip entry `data/<key>`. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: DType,
  ) {}
}
/** What _rebuild_tensor_v2 returns: a strided view into a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}
type Value = null | boolean | number | bigint | string | PyFloat | Value[] | PyTuple | PyDict | PyGlobal | StorageRef | TensorRef;

const STORAGE_DTYPES: Record<string, DType> = {
  'torch.FloatStorage': 'F32',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.DoubleStorage': 'F64',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
};

const ORDERED_DICT = 'collections.OrderedDict';
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const REBUILD_PARAMETER_WITH_STATE = 'torch._utils._rebuild_parameter_with_state';

/** Every global a pickled tensor state_dict may name. */
const ALLOWED_GLOBALS = new Set([ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, REBUILD_PARAMETER_WITH_STATE, ...Object.keys(STORAGE_DTYPES)]);

function describe(v: Value): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number' || typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyFloat) return 'float';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyDict) return 'dict';
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof StorageRef) return 'storage';
  return 'tensor';
}

/** Keeps names from a hostile pickle printable and on one line. */
function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

// ---------------------------------------------------------------------------
// The restricted unpickler.

/** Opcodes, by byte (pickletools names). */
const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  BINFLOAT: 0x47, // G
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  BINUNICODE: 0x58, // X
  EMPTY_LIST: 0x5d, // ]
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_TUPLE: 0x29, // )
  PROTO: 0x80,
  NEWOBJ: 0x81,
  LONG1: 0x8a,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

const utf8 = new TextDecoder('utf-8');

class Unpickler {
  private pos = 0;
  /** Position of the opcode being executed, for error messages. */
  private at = 0;
  private stack: Value[] = [];
  /** Stacks saved by MARK; the matching TUPLE/LIST/DICT/APPENDS/SETITEMS pops back to it. */
  private readonly marks: Value[][] = [];
  private readonly memo = new Map<number, Value>();
  /** One StorageRef per key, so tensors sharing a storage share the object. */
  private readonly storages = new Map<string, StorageRef>();

  constructor(
    private readonly file: string,
    private readonly data: Buffer,
  ) {}

  private fail(msg: string): never {
    throw new Error(`${this.file}: malformed data.pkl at byte ${this.at}: ${msg}`);
  }

  private take(n: number): number {
    if (n > this.data.length - this.pos) this.fail(`truncated (needs ${n} more bytes, ${this.data.length - this.pos} left)`);
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private u8(): number {
    return this.data[this.take(1)];
  }
  private u32(): number {
    return this.data.readUInt32LE(this.take(4));
  }
  private u64(): number {
    const v = this.data.readBigUInt64LE(this.take(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('length beyond 2^53');
    return Number(v);
  }
  private bytes(n: number): Buffer {
    const p = this.take(n);
    return this.data.subarray(p, p + n);
  }
  /** A newline-terminated ASCII line (GLOBAL's operands). */
  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('truncated GLOBAL (no newline)');
    const s = this.data.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  private push(v: Value): void {
    this.stack.push(v);
  }
  private pop(): Value {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack.pop() as Value;
  }
  private top(): Value {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }
  /** Everything pushed since the last MARK, restoring the stack from before it. */
  private popMark(): Value[] {
    const saved = this.marks.pop();
    if (!saved) this.fail('no MARK to pop to');
    const items = this.stack;
    this.stack = saved;
    return items;
  }

  /** Checks a name against the allowlist before anything else happens to it. */
  private global(module: string, name: string): PyGlobal {
    const qualname = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(qualname)) {
      throw new Error(`${this.file}: refusing to load: the pickle references ${printable(qualname)}, which is not part of a tensor state_dict`);
    }
    return new PyGlobal(module, name);
  }

  private dictOf(v: Value, op: string): PyDict {
    if (!(v instanceof PyDict)) this.fail(`${op} on a ${describe(v)}, not a dict`);
    return v;
  }
  private listOf(v: Value, op: string): Value[] {
    if (!Array.isArray(v)) this.fail(`${op} on a ${describe(v)}, not a list`);
    return v;
  }
  private setItem(d: PyDict, key: Value, value: Value): void {
    if (key !== null && typeof key === 'object') this.fail(`unsupported dict key of type ${describe(key)}`);
    d.map.set(key, value);
  }

  run(): Value {
    const d = this.data;
    for (let executed = 0; ; executed++) {
      this.at = this.pos;
      if (executed === MAX_PICKLE_OPCODES) this.fail(`more than ${MAX_PICKLE_OPCODES} opcodes, far more than a state_dict of tensors needs`);
      const op = this.u8();
      switch (op) {
        case OP.PROTO: {
          const v = this.u8();
          if (v < 2 || v > 5) this.fail(`unsupported pickle protocol ${v}`);
          break;
        }
        case OP.FRAME: // protocol 4 framing: a length hint, the opcodes follow inline
          this.take(8);
          break;
        case OP.STOP: {
          const result = this.pop();
          if (this.stack.length || this.marks.length) this.fail('STOP with values left on the stack');
          return result;
        }

        // Memo: BINPUT/MEMOIZE store the top of the stack, BINGET pushes it again.
        case OP.BINPUT:
          this.memo.set(this.u8(), this.top());
          break;
        case OP.LONG_BINPUT:
          this.memo.set(this.u32(), this.top());
          break;
        case OP.MEMOIZE:
          this.memo.set(this.memo.size, this.top());
          break;
        case OP.BINGET:
        case OP.LONG_BINGET: {
          const i = op === OP.BINGET ? this.u8() : this.u32();
          if (!this.memo.has(i)) this.fail(`memo key ${i} was never stored`);
          this.push(this.memo.get(i) as Value);
          break;
        }

        // Scalars.
        case OP.NONE:
          this.push(null);
          break;
        case OP.NEWTRUE:
          this.push(true);
          break;
        case OP.NEWFALSE:
          this.push(false);
          break;
        case OP.BININT:
          this.push(d.readInt32LE(this.take(4)));
          break;
        case OP.BININT1:
          this.push(this.u8());
          break;
        case OP.BININT2:
          this.push(d.readUInt16LE(this.take(2)));
          break;
        case OP.LONG1: {
          // n bytes of little-endian two's complement.
          const b = this.bytes(this.u8());
          let v = 0n;
          for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
          if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
          const safe = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
          this.push(safe ? Number(v) : v);
          break;
        }
        case OP.BINFLOAT:
          this.push(new PyFloat(d.readDoubleBE(this.take(8))));
          break;
        case OP.BINUNICODE:
          this.push(utf8.decode(this.bytes(this.u32())));
          break;
        case OP.SHORT_BINUNICODE:
          this.push(utf8.decode(this.bytes(this.u8())));
          break;
        case OP.BINUNICODE8:
          this.push(utf8.decode(this.bytes(this.u64())));
          break;
        // Python 2 str (what protocol-2 pickles from Python 2 hold); read as latin-1 text.
        case OP.SHORT_BINSTRING:
          this.push(this.bytes(this.u8()).toString('latin1'));
          break;
        case OP.BINSTRING: {
          const n = d.readInt32LE(this.take(4));
          if (n < 0) this.fail('negative BINSTRING length');
          this.push(this.bytes(n).toString('latin1'));
          break;
        }

        // Containers.
        case OP.MARK:
          this.marks.push(this.stack);
          this.stack = [];
          break;
        case OP.EMPTY_TUPLE:
          this.push(new PyTuple([]));
          break;
        case OP.TUPLE:
          this.push(new PyTuple(this.popMark()));
          break;
        case OP.TUPLE1:
        case OP.TUPLE2:
        case OP.TUPLE3: {
          const n = op - OP.TUPLE1 + 1;
          const items: Value[] = [];
          for (let i = 0; i < n; i++) items.unshift(this.pop());
          this.push(new PyTuple(items));
          break;
        }
        case OP.EMPTY_LIST:
          this.push([]);
          break;
        case OP.LIST:
          this.push(this.popMark());
          break;
        case OP.APPEND: {
          const v = this.pop();
          this.listOf(this.top(), 'APPEND').push(v);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark();
          const list = this.listOf(this.top(), 'APPENDS');
          for (const v of items) list.push(v); // not push(...items): a huge batch would overflow the call stack
          break;
        }
        case OP.EMPTY_DICT:
          this.push(new PyDict());
          break;
        case OP.DICT: {
          const items = this.popMark();
          if (items.length % 2) this.fail('DICT with an odd number of items');
          const dict = new PyDict();
          for (let i = 0; i < items.length; i += 2) this.setItem(dict, items[i], items[i + 1]);
          this.push(dict);
          break;
        }
        case OP.SETITEM: {
          const value = this.pop();
          const key = this.pop();
          this.setItem(this.dictOf(this.top(), 'SETITEM'), key, value);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark();
          if (items.length % 2) this.fail('SETITEMS with an odd number of items');
          const dict = this.dictOf(this.top(), 'SETITEMS');
          for (let i = 0; i < items.length; i += 2) this.setItem(dict, items[i], items[i + 1]);
          break;
        }

        // Names and calls: only the allowlist, and only what each allowed name does.
        case OP.GLOBAL: {
          const module = this.line();
          this.push(this.global(module, this.line()));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL operands are not strings');
          this.push(this.global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.pop();
          const fn = this.pop();
          if (!(args instanceof PyTuple)) this.fail(`REDUCE arguments are a ${describe(args)}, not a tuple`);
          this.push(this.call(fn, args.items));
          break;
        }
        case OP.NEWOBJ: {
          // cls.__new__(cls, *args): only OrderedDict(), as some pickles spell it.
          const args = this.pop();
          const cls = this.pop();
          if (!(cls instanceof PyGlobal) || cls.qualname !== ORDERED_DICT || !(args instanceof PyTuple) || args.items.length) {
            this.fail(`NEWOBJ of ${describe(cls)} is not supported`);
          }
          this.push(new PyDict());
          break;
        }
        case OP.BUILD: {
          // obj.__setstate__(state). Only a dict's attributes: none, or the
          // `_metadata` (module versions) that nn.Module.state_dict() attaches to
          // its OrderedDict. Both are plain data; `_metadata` is dropped.
          const state = this.pop();
          const obj = this.top();
          const harmless = state === null || (state instanceof PyDict && [...state.map.keys()].every((k) => k === '_metadata'));
          if (!(obj instanceof PyDict) || !harmless) this.fail(`BUILD of a ${describe(obj)} with a ${describe(state)} state is not supported`);
          break;
        }
        case OP.BINPERSID:
          this.push(this.storage(this.pop()));
          break;

        default:
          this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ''}`);
      }
    }
  }

  /** REDUCE: the allowlisted callables, reimplemented. */
  private call(fn: Value, args: Value[]): Value {
    if (!(fn instanceof PyGlobal)) this.fail(`REDUCE on a ${describe(fn)}, which is not callable here`);
    switch (fn.qualname) {
      case ORDERED_DICT:
        if (args.length) this.fail('OrderedDict(...) with arguments is not supported');
        return new PyDict();
      case REBUILD_TENSOR:
        return this.rebuildTensor(args);
      // _rebuild_parameter(data, requires_grad, backward_hooks[, state]): a Parameter is its tensor.
      case REBUILD_PARAMETER:
      case REBUILD_PARAMETER_WITH_STATE: {
        const want = fn.qualname === REBUILD_PARAMETER ? 3 : 4;
        if (args.length !== want || !(args[0] instanceof TensorRef)) this.fail(`${fn.name} expects a tensor and ${want - 1} more arguments`);
        return args[0];
      }
      default:
        this.fail(`REDUCE on ${fn.qualname} is not supported`);
    }
  }

  /** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
  private rebuildTensor(args: Value[]): TensorRef {
    if (args.length !== 6 && args.length !== 7) this.fail(`_rebuild_tensor_v2 with ${args.length} arguments (expected 6 or 7)`);
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) this.fail(`_rebuild_tensor_v2 on a ${describe(storage)}, not a storage`);
    const ints = (v: Value, what: string): number[] => {
      if (!(v instanceof PyTuple) || !v.items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
        this.fail(`tensor ${what} is not a tuple of non-negative ints`);
      }
      return v.items as number[];
    };
    const shape = ints(size, 'size');
    const strides = ints(stride, 'stride');
    if (strides.length !== shape.length) this.fail(`tensor size ${shape.length}-d but stride ${strides.length}-d`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) this.fail('tensor storage_offset is not a non-negative int');
    return new TensorRef(storage, offset, shape, strides);
  }

  /** BINPERSID with ('storage', StorageClass, key, location, numel). */
  private storage(pid: Value): StorageRef {
    const items = pid instanceof PyTuple ? pid.items : [];
    const [tag, cls, key, location, count] = items;
    if (items.length !== 5 || tag !== 'storage' || typeof key !== 'string' || typeof location !== 'string' || typeof count !== 'number') {
      this.fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    const dtype = cls instanceof PyGlobal ? STORAGE_DTYPES[cls.qualname] : undefined;
    if (!dtype) this.fail(`unknown storage type ${describe(cls)}`);
    const seen = this.storages.get(key);
    if (seen && seen.dtype !== dtype) this.fail(`storage "${key}" is used as both ${seen.dtype} and ${dtype}`);
    const ref = seen ?? new StorageRef(key, dtype);
    this.storages.set(key, ref);
    return ref;
  }
}

// ---------------------------------------------------------------------------
// The state_dict and its tensors.

/** Why `d` is not a str → tensor map, or null if it is one. */
function notTensors(d: PyDict): string | null {
  for (const [k, v] of d.map) {
    if (typeof k !== 'string') return `it has a key of type ${describe(k)}`;
    if (!(v instanceof TensorRef)) return `"${printable(k)}" is a ${describe(v)}`;
  }
  return null;
}

/** The state_dict: the top-level dict, or one level down under "state_dict" / "model". */
function findStateDict(file: string, root: Value): Map<string, TensorRef> {
  const fail = (why: string): never => {
    throw new Error(`${file}: the pickle is not a state_dict of tensors (${why})`);
  };
  if (!(root instanceof PyDict)) return fail(`its top level is a ${describe(root)}`);
  let dict = root;
  const why = notTensors(root);
  if (why) {
    const nested = ['state_dict', 'model'].map((k) => root.map.get(k)).find((v): v is PyDict => v instanceof PyDict && notTensors(v) === null);
    dict = nested ?? fail(why);
  }
  return dict.map as Map<string, TensorRef>;
}

function numelOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** True if the strides are the row-major ones for the shape (dims of size 1 may have any stride). */
function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/**
 * Copies a strided view out of `src` (the storage elements from the view's
 * first one onwards) into row-major order.
 */
function gather(src: Uint8Array, shape: number[], stride: number[], itemsize: number): Uint8Array {
  const n = numelOf(shape);
  const out = new Uint8Array(n * itemsize);
  if (n === 0) return out;
  const rank = shape.length;
  const inner = rank ? shape[rank - 1] : 1;
  const innerStride = rank ? stride[rank - 1] : 0;
  const idx = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  let base = 0; // element index (relative to src) of the current row's first element
  let o = 0;
  for (let row = 0; row < n / inner; row++) {
    if (innerStride === 1) {
      out.set(src.subarray(base * itemsize, (base + inner) * itemsize), o);
      o += inner * itemsize;
    } else {
      for (let j = 0; j < inner; j++) {
        const s = (base + j * innerStride) * itemsize;
        for (let b = 0; b < itemsize; b++) out[o++] = src[s + b];
      }
    }
    // Odometer over the outer dims.
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++;
      base += stride[d];
      if (idx[d] < shape[d]) break;
      base -= idx[d] * stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

interface TensorRecord {
  dtype: DType;
  shape: number[];
  stride: number[];
  offset: number;
  /** Elements of the storage the view spans, from `offset` (0 for an empty tensor). */
  span: number;
  blob: ZipEntry;
}

class TorchBinFile implements TensorSource {
  constructor(
    readonly path: string,
    private readonly zip: ZipReader,
    private readonly tensors: Map<string, TensorRecord>,
  ) {}

  names(): string[] {
    return [...this.tensors.keys()];
  }

  private get(name: string): TensorRecord {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor "${name}"`);
    return t;
  }

  info(name: string): { dtype: DType; shape: number[] } {
    const t = this.get(name);
    return { dtype: t.dtype, shape: [...t.shape] };
  }

  read(name: string): RawTensor {
    const t = this.get(name);
    const itemsize = DTYPE_BYTES[t.dtype];
    const bytes = this.zip.readRange(t.blob, t.offset * itemsize, t.span * itemsize, MAX_INFLATED_STORAGE_BYTES);
    const data = isContiguous(t.shape, t.stride) ? bytes : gather(bytes, t.shape, t.stride, itemsize);
    return { dtype: t.dtype, shape: [...t.shape], data };
  }

  close(): void {
    this.zip.close();
  }
}

/** Opens a torch.save zip checkpoint holding a state_dict; reads only data.pkl until `read` is called. */
export function openTorchBin(file: string): TensorSource {
  const zip = openZip(file);
  try {
    const fail: (msg: string) => never = (msg) => {
      throw new Error(`${file}: ${msg}`);
    };
    // The archive folder is arbitrary ("archive/", or the file's stem); data.pkl names it.
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length === 0) fail('missing data.pkl: not a PyTorch (torch.save) zip checkpoint');
    if (pkls.length > 1) fail(`holds several archives (${pkls.map(printable).join(', ')})`);
    const prefix = pkls[0].slice(0, -'data.pkl'.length);

    const byteorder = zip.entries.get(`${prefix}byteorder`);
    if (byteorder) {
      const order = zip.read(byteorder, 64).toString('latin1');
      if (order === 'big') fail('big-endian checkpoints are not supported');
      if (order !== 'little') fail(`unknown byteorder "${printable(order)}"`);
    }

    const pickle = zip.read(zip.entries.get(pkls[0]) as ZipEntry, MAX_PICKLE_BYTES);
    const stateDict = findStateDict(file, new Unpickler(file, pickle).run());

    const tensors = new Map<string, TensorRecord>();
    /** Bytes of each storage its tensors use, from its start to the end of the last one. */
    const used = new Map<ZipEntry, number>();
    for (const [name, ref] of stateDict) {
      const { dtype, key } = ref.storage;
      const itemsize = DTYPE_BYTES[dtype];
      const blobName = `${prefix}data/${key}`;
      const blob = zip.entries.get(blobName);
      if (!blob) fail(`tensor "${printable(name)}": storage ${printable(blobName)} is missing`);
      const n = numelOf(ref.shape);
      if (!Number.isSafeInteger(n * itemsize)) fail(`tensor "${printable(name)}": shape ${JSON.stringify(ref.shape)} is too large`);
      // Elements from the first one the view touches to one past the last (strides are >= 0).
      const span = n === 0 ? 0 : ref.shape.reduce((s, size, d) => s + (size - 1) * ref.stride[d], 0) + 1;
      const needed = (ref.offset + span) * itemsize;
      if (n > 0 && needed > blob.uncompressedSize) {
        fail(`tensor "${printable(name)}": storage ${printable(blobName)} holds ${blob.uncompressedSize} bytes but the tensor needs ${needed}`);
      }
      tensors.set(name, { dtype, shape: ref.shape, stride: ref.stride, offset: n === 0 ? 0 : ref.offset, span, blob });
      used.set(blob, Math.max(used.get(blob) ?? 0, n === 0 ? 0 : needed));
    }
    for (const [blob, bytes] of used) {
      if (blob.method === METHOD_DEFLATE && blob.uncompressedSize > bytes) {
        fail(`deflated storage ${printable(blob.name)} inflates to ${blob.uncompressedSize} bytes, more than the ${bytes} its tensors use`);
      }
    }
    return new TorchBinFile(file, zip, tensors);
  } catch (err) {
    zip.close();
    throw err;
  }
}

/** The zip, or a clearer error for a pre-1.6 (non-zip) torch.save file. */
function openZip(file: string): ZipReader {
  try {
    return ZipReader.open(file);
  } catch (err) {
    const head = Buffer.alloc(2);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, head, 0, 2, 0);
    } finally {
      fs.closeSync(fd);
    }
    // The legacy format is a bare pickle stream (PROTO 2 first).
    if (head[0] === OP.PROTO && head[1] === 2) {
      throw new Error(
        `${file}: legacy (pre-PyTorch-1.6) torch.save format, which is not supported; re-save it with a recent PyTorch or convert it to safetensors`,
        { cause: err },
      );
    }
    throw err;
  }
}
