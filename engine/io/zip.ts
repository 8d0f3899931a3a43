// A minimal, read-only ZIP reader over a file descriptor, enough for the
// archives torch.save writes (and ordinary zips): the End Of Central Directory
// record (and its ZIP64 variant, which torch always writes and which files
// over 4 GB need), the central directory and the local file headers.
//
// Nothing is trusted: every offset and size is checked against the file size
// before it is used, so a truncated or corrupt file gives a one-line error
// naming the file instead of a garbage read. Entry data is read positionally,
// so a multi-GB archive never has to be in memory.
import fs from 'node:fs';
import zlib from 'node:zlib';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;

const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_MIN_SIZE = 56;
const CENTRAL_HEADER_SIZE = 46;
const LOCAL_HEADER_SIZE = 30;
/** The EOCD record may be followed by a comment of at most 65535 bytes. */
const MAX_EOCD_SEARCH = EOCD_SIZE + 0xffff;
/** ZIP64 extra field tag (in central directory entries). */
const ZIP64_EXTRA_ID = 0x0001;
/** General-purpose flag bit 0: the entry is encrypted. */
const FLAG_ENCRYPTED = 0x1;

/** Refuse central directories larger than this (a state_dict zip has ~100 bytes per tensor). */
const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;

export const METHOD_STORED = 0;
export const METHOD_DEFLATE = 8;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; others are listed but cannot be read. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Offset of the local file header; the data follows it (see ZipReader.dataOffset). */
  localHeaderOffset: number;
}

export class ZipReader {
  /** Entries in central-directory order. */
  readonly entries = new Map<string, ZipEntry>();
  private readonly dataOffsets = new Map<ZipEntry, number>();

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly byteLength: number,
    /** Where the central directory starts: every entry's data must end before it. */
    private readonly centralDirOffset: number,
  ) {}

  /** Opens and indexes `file`; throws a one-line error naming the file if it is not a readable zip. */
  static open(file: string): ZipReader {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const { cdOffset, cdSize, count } = readEndOfCentralDirectory(file, fd, size);
      const zip = new ZipReader(file, fd, size, cdOffset);
      zip.parseCentralDirectory(readAt(file, fd, cdOffset, cdSize), count);
      return zip;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private fail(msg: string): never {
    throw new Error(`${this.path}: ${msg}`);
  }

  private parseCentralDirectory(cd: Buffer, count: number): void {
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + CENTRAL_HEADER_SIZE > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) {
        this.fail(`corrupt zip: central directory entry ${i} of ${count} is malformed`);
      }
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc32 = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let uncompressedSize = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      const end = p + CENTRAL_HEADER_SIZE + nameLen + extraLen + commentLen;
      if (end > cd.length) this.fail(`corrupt zip: central directory entry ${i} runs past the directory`);
      const name = cd.toString('utf8', p + CENTRAL_HEADER_SIZE, p + CENTRAL_HEADER_SIZE + nameLen);

      // ZIP64: a field saturated at 0xFFFFFFFF is stored as 8 bytes in the
      // 0x0001 extra field instead, in this order, and only those present.
      if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
        const extraStart = p + CENTRAL_HEADER_SIZE + nameLen;
        const z64 = findExtra(cd.subarray(extraStart, extraStart + extraLen), ZIP64_EXTRA_ID);
        if (!z64) this.fail(`corrupt zip: entry "${name}" has 32-bit sizes saturated but no ZIP64 extra field`);
        let q = 0;
        const next = (): number => {
          if (q + 8 > z64.length) this.fail(`corrupt zip: entry "${name}" has a short ZIP64 extra field`);
          const v = u64(z64, q, () => this.fail(`corrupt zip: entry "${name}" has a size beyond 2^53`));
          q += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }

      if (localHeaderOffset + LOCAL_HEADER_SIZE + compressedSize > this.centralDirOffset) {
        this.fail(`corrupt or truncated zip: entry "${name}" (${compressedSize} bytes at offset ${localHeaderOffset}) runs past the data area`);
      }
      if (this.entries.has(name)) this.fail(`corrupt zip: duplicate entry "${name}"`);
      this.entries.set(name, { name, method, flags, crc32, compressedSize, uncompressedSize, localHeaderOffset });
      p = end;
    }
  }

  /**
   * Offset of the entry's first data byte. The local header repeats the name
   * and has its own extra field (torch pads it so data is 64-byte aligned),
   * so the offset is only known after reading it; the sizes are taken from the
   * central directory (torch sets bit 3 and leaves them 0 in the local header).
   */
  dataOffset(entry: ZipEntry): number {
    const cached = this.dataOffsets.get(entry);
    if (cached !== undefined) return cached;
    const h = readAt(this.path, this.fd, entry.localHeaderOffset, LOCAL_HEADER_SIZE);
    if (h.readUInt32LE(0) !== SIG_LOCAL) this.fail(`corrupt zip: no local header for entry "${entry.name}" at offset ${entry.localHeaderOffset}`);
    const nameLen = h.readUInt16LE(26);
    const extraLen = h.readUInt16LE(28);
    const start = entry.localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + extraLen;
    if (start + entry.compressedSize > this.centralDirOffset) {
      this.fail(`corrupt or truncated zip: data of entry "${entry.name}" runs past the data area`);
    }
    const localName = readAt(this.path, this.fd, entry.localHeaderOffset + LOCAL_HEADER_SIZE, nameLen).toString('utf8');
    if (localName !== entry.name) this.fail(`corrupt zip: local header names "${localName}" where the directory says "${entry.name}"`);
    this.dataOffsets.set(entry, start);
    return start;
  }

  private readable(entry: ZipEntry): void {
    if (entry.flags & FLAG_ENCRYPTED) this.fail(`entry "${entry.name}" is encrypted`);
    if (entry.method !== METHOD_STORED && entry.method !== METHOD_DEFLATE) {
      this.fail(`entry "${entry.name}" uses compression method ${entry.method} (only stored and deflate are supported)`);
    }
  }

  /**
   * The whole (decompressed) entry, checked against its CRC-32. For small
   * entries; refuses anything larger than `maxBytes`.
   */
  read(entry: ZipEntry, maxBytes: number): Buffer {
    this.readable(entry);
    if (entry.uncompressedSize > maxBytes) this.fail(`entry "${entry.name}" is ${entry.uncompressedSize} bytes (limit ${maxBytes})`);
    const raw = readAt(this.path, this.fd, this.dataOffset(entry), entry.compressedSize);
    let data = raw;
    if (entry.method === METHOD_DEFLATE) {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (e) {
        this.fail(`corrupt zip: entry "${entry.name}" does not inflate (${(e as Error).message})`);
      }
    }
    if (data.length !== entry.uncompressedSize) {
      this.fail(`corrupt zip: entry "${entry.name}" holds ${data.length} bytes, the directory says ${entry.uncompressedSize}`);
    }
    if (zlib.crc32(data) !== entry.crc32) this.fail(`corrupt zip: entry "${entry.name}" fails its CRC-32 check`);
    return data;
  }

  /**
   * `length` bytes of the entry's uncompressed contents starting at `offset`.
   * Stored entries are read positionally (only those bytes); a deflated entry
   * has to be inflated whole first, so it is bounded by `maxBytes`.
   */
  readRange(entry: ZipEntry, offset: number, length: number, maxBytes: number): Uint8Array {
    this.readable(entry);
    if (offset < 0 || length < 0 || offset + length > entry.uncompressedSize) {
      this.fail(`bytes [${offset}, ${offset + length}) are outside entry "${entry.name}" (${entry.uncompressedSize} bytes)`);
    }
    if (entry.method === METHOD_DEFLATE) return this.read(entry, maxBytes).subarray(offset, offset + length);
    const out = new Uint8Array(length);
    readInto(this.path, this.fd, out, this.dataOffset(entry) + offset);
    return out;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Locates the central directory from the (ZIP64) End Of Central Directory record at the end of the file. */
function readEndOfCentralDirectory(file: string, fd: number, size: number): { cdOffset: number; cdSize: number; count: number } {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const notZip = () => fail(`not a zip archive, or truncated (no end-of-central-directory record in its ${size} bytes)`);
  if (size < EOCD_SIZE) notZip();
  const tailLen = Math.min(size, MAX_EOCD_SEARCH);
  const tailStart = size - tailLen;
  const tail = readAt(file, fd, tailStart, tailLen);
  // Scan backwards; the record is the one whose comment runs exactly to the end of the file.
  let eocd = -1;
  for (let p = tailLen - EOCD_SIZE; p >= 0; p--) {
    if (tail.readUInt32LE(p) === SIG_EOCD && p + EOCD_SIZE + tail.readUInt16LE(p + 20) === tailLen) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) notZip();
  if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) fail('multi-disk (split) zip archives are not supported');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdPos = tailStart + eocd;
  let cdLimit = eocdPos;

  // ZIP64: a locator just before the EOCD points at the ZIP64 EOCD record,
  // whose 64-bit fields replace the (possibly saturated) 16/32-bit ones.
  const locPos = eocdPos - ZIP64_LOCATOR_SIZE;
  if (locPos >= 0) {
    const loc = readAt(file, fd, locPos, ZIP64_LOCATOR_SIZE);
    if (loc.readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
      const recPos = u64(loc, 8, () => fail('corrupt zip: ZIP64 locator offset beyond 2^53'));
      if (recPos + ZIP64_EOCD_MIN_SIZE > locPos) fail(`corrupt or truncated zip: ZIP64 end-of-central-directory record at ${recPos} is out of range`);
      const rec = readAt(file, fd, recPos, ZIP64_EOCD_MIN_SIZE);
      if (rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) fail('corrupt zip: ZIP64 locator does not point at a ZIP64 end-of-central-directory record');
      const big = () => fail('corrupt zip: ZIP64 directory field beyond 2^53');
      count = u64(rec, 32, big);
      cdSize = u64(rec, 40, big);
      cdOffset = u64(rec, 48, big);
      cdLimit = recPos;
    }
  }
  if (cdOffset + cdSize > cdLimit) fail(`corrupt or truncated zip: central directory (${cdSize} bytes at ${cdOffset}) runs past its end record`);
  if (cdSize > MAX_CENTRAL_DIRECTORY_BYTES) fail(`zip central directory of ${cdSize} bytes exceeds the ${MAX_CENTRAL_DIRECTORY_BYTES}-byte limit`);
  if (count * CENTRAL_HEADER_SIZE > cdSize) fail(`corrupt zip: ${count} entries cannot fit in a ${cdSize}-byte central directory`);
  return { cdOffset, cdSize, count };
}

/** The payload of the extra-field block with tag `id` ([tag u16][len u16][payload]...), if present. */
function findExtra(extra: Buffer, id: number): Buffer | undefined {
  let p = 0;
  while (p + 4 <= extra.length) {
    const tag = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    if (p + 4 + len > extra.length) return undefined;
    if (tag === id) return extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
  }
  return undefined;
}

/** Little-endian u64 as a number; `tooBig` is called (and must throw) above 2^53. */
function u64(buf: Buffer, off: number, tooBig: () => never): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) tooBig();
  return Number(v);
}

function readAt(file: string, fd: number, pos: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  readInto(file, fd, buf, pos);
  return buf;
}

function readInto(file: string, fd: number, out: Uint8Array, pos: number): void {
  let off = 0;
  while (off < out.byteLength) {
    const n = fs.readSync(fd, out, off, out.byteLength - off, pos + off);
    if (n === 0) throw new Error(`${file}: truncated (wanted ${out.byteLength} bytes at offset ${pos}, the file ends at ${pos + off})`);
    off += n;
  }
}
