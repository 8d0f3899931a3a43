// Crash-safe writes: data goes to a temporary name in the same folder, is
// fsynced, then renamed over the final name, and the folder is fsynced so the
// rename itself survives a power cut. A reader sees the old file or the new
// one, never half of one.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

export function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some platforms (Windows) cannot open or fsync a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Writes the chunks to `target` atomically. Returns the number of bytes written. */
export function writeFileAtomic(target: string, chunks: Iterable<Uint8Array> | Uint8Array | string): number {
  const tmp = tempNameFor(target);
  const fd = fs.openSync(tmp, 'w');
  let bytes = 0;
  try {
    const list = typeof chunks === 'string' ? [Buffer.from(chunks)] : chunks instanceof Uint8Array ? [chunks] : chunks;
    for (const chunk of list) {
      let off = 0;
      while (off < chunk.byteLength) off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
      bytes += chunk.byteLength;
    }
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(path.dirname(target));
  return bytes;
}

/** Fsyncs every file and folder under `dir` (and `dir` itself), so that a rename of `dir` publishes durable contents. */
function fsyncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      fsyncTree(p);
    } else if (entry.isFile()) {
      const fd = fs.openSync(p, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  fsyncDir(dir);
}

export interface WriteDirOptions {
  /**
   * Called once the new folder is complete and durable, just before it is
   * renamed into place: the moment to forget (e.g. in a database) whatever
   * described the folder it replaces. If it throws, nothing is renamed.
   */
  beforeRename?: () => void;
}

/**
 * Builds a folder atomically: `fill` writes into a temporary sibling folder,
 * whose files (at any depth) are fsynced before it is renamed to `target`. An
 * existing target is replaced only once the new folder is complete. Resolves
 * to what `fill` returned.
 */
export async function writeDirAtomic<T = void>(target: string, fill: (tmpDir: string) => T | Promise<T>, options: WriteDirOptions = {}): Promise<T> {
  const parent = path.dirname(path.resolve(target));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = tempNameFor(target);
  fs.mkdirSync(tmp);
  try {
    const result = await fill(tmp);
    fsyncTree(tmp);
    options.beforeRename?.();
    if (fs.existsSync(target)) {
      const old = tempNameFor(target);
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
    fsyncDir(parent);
    return result;
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Leftover temporary files/folders (from a killed writer) inside `dir`. */
export function listTempLeftovers(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => /^\..+\.tmp-\d+-[0-9a-f]{8}$/.test(n))
    .map((n) => path.join(dir, n));
}

/** The pid of the process that created a temporary name (see tempNameFor), or null for any other name. */
export function tempOwnerPid(name: string): number | null {
  const m = /^\..+\.tmp-(\d+)-[0-9a-f]{8}$/.exec(path.basename(name));
  return m ? Number(m[1]) : null;
}
