// Dataset uploads in pieces (engine/protocol/upload.ts cuts them): the first
// piece opens an upload of the bytes it announces, each piece is appended to
// a hidden partial file in the datasets folder, and the piece that completes
// the bytes turns it into `<time>-<name>`. More than announced refuses the
// upload and removes its partial file. At most MAX_OPEN_UPLOADS are open: one
// more drops the oldest, so a client that went away mid-upload leaves nothing
// behind for long.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fsyncDir } from '../io/atomic';
import { KindedError } from '../errors';
import type { Result, ValidParams } from '../protocol/protocol';

const MAX_OPEN_UPLOADS = 4;

interface OpenUpload {
  name: string;
  bytes: number;
  received: number;
  partial: string;
}

/** A dropped file's name as a file name of the datasets folder. */
function safeName(name: string): string {
  return path.basename(name).replace(/[^\w.\- ]+/g, '_');
}

export class DatasetUploads {
  private readonly open = new Map<string, OpenUpload>();

  constructor(private readonly dir: string) {}

  /** Takes one piece; the saved file's path once the announced bytes have arrived. */
  receive(p: ValidParams<'datasets.upload'>): Result<'datasets.upload'> {
    const uploadId = p.uploadId ?? this.start(p.name, p.bytes);
    const upload = this.open.get(uploadId);
    if (!upload) throw new KindedError('not_found', `no upload ${uploadId} in progress (it was completed, refused, or dropped for newer ones)`);
    if (upload.name !== p.name || upload.bytes !== p.bytes) {
      this.drop(uploadId);
      throw new KindedError('bad_input', `upload ${uploadId} started as ${upload.name} of ${upload.bytes} bytes; a piece may not change them`);
    }
    const piece = Buffer.from(p.content);
    if (upload.received + piece.byteLength > upload.bytes) {
      this.drop(uploadId);
      throw new KindedError('bad_input', `upload of ${upload.name}: more than the ${upload.bytes} bytes announced`);
    }
    try {
      fs.appendFileSync(upload.partial, piece);
    } catch (err) {
      this.drop(uploadId);
      throw err;
    }
    upload.received += piece.byteLength;
    if (upload.received < upload.bytes) return { uploadId, received: upload.received, path: null };
    this.open.delete(uploadId);
    const file = path.join(this.dir, `${Date.now()}-${safeName(upload.name)}`);
    const fd = fs.openSync(upload.partial, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(upload.partial, file);
    fsyncDir(this.dir);
    return { uploadId, received: upload.received, path: file };
  }

  /** Removes every open upload's partial file (the engine is closing). */
  close(): void {
    for (const uploadId of [...this.open.keys()]) this.drop(uploadId);
  }

  private start(name: string, bytes: number): string {
    const oldest = this.open.keys().next();
    if (this.open.size >= MAX_OPEN_UPLOADS && !oldest.done) this.drop(oldest.value);
    const uploadId = crypto.randomBytes(12).toString('base64url');
    const partial = path.join(this.dir, `.upload-${uploadId}.partial`);
    fs.writeFileSync(partial, '');
    this.open.set(uploadId, { name, bytes, received: 0, partial });
    return uploadId;
  }

  private drop(uploadId: string): void {
    const upload = this.open.get(uploadId);
    if (!upload) return;
    this.open.delete(uploadId);
    fs.rmSync(upload.partial, { force: true });
  }
}
