// One file from the Hub into a folder: bytes go to "<name>.part", which an
// interrupted transfer leaves behind and the next attempt (or the next pull)
// continues with an HTTP Range request; a server that ignores the Range and
// answers 200 gets the file written from the start again. The file takes its
// real name only once its size and hash are verified.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../io/atomic';
import { CancelledError } from '../jobs/job';
import { HubError, hubRequest, type HubTarget, type RepoFile } from './api';

/** Attempts per file when the connection breaks or the server fails (5xx). */
const ATTEMPTS = 5;
const RETRY_DELAY_MS = 500;

export const partName = (file: string): string => `${file}.part`;

const sizeOf = (file: string): number => fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;

/** sha256 and git blob sha1 of a file, read in chunks. */
export async function hashFile(file: string): Promise<{ sha256: string; gitOid: string }> {
  const sha256 = crypto.createHash('sha256');
  const git = crypto.createHash('sha1').update(`blob ${sizeOf(file)}\0`);
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 })) {
    sha256.update(chunk);
    git.update(chunk);
  }
  return { sha256: sha256.digest('hex'), gitOid: git.digest('hex') };
}

/** Why `file` is not `expected`, or null when it is (size, then sha256 or git oid where known). */
export async function verifyFile(file: string, expected: RepoFile): Promise<string | null> {
  const size = sizeOf(file);
  if (size !== expected.size) return `size ${size} bytes, expected ${expected.size}`;
  if (!expected.sha256 && !expected.gitOid) return null;
  const h = await hashFile(file);
  if (expected.sha256 && h.sha256 !== expected.sha256) return `sha256 ${h.sha256}, expected ${expected.sha256}`;
  if (!expected.sha256 && expected.gitOid && h.gitOid !== expected.gitOid) return `git blob id ${h.gitOid}, expected ${expected.gitOid}`;
  return null;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CancelledError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** "bytes 100-199/200" → 100 */
function rangeStart(contentRange: string | null): number | null {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(contentRange ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * One attempt: continues `part` from its current size (or restarts it when the
 * server sends the whole file). Returns normally when the response ended,
 * complete or not; throws on HTTP errors, a broken connection (a HubError with
 * status null) and cancellation.
 */
async function attempt(t: HubTarget, url: string, part: string, file: RepoFile, onBytes: (n: number) => void, signal: AbortSignal): Promise<string | null> {
  const have = sizeOf(part);
  const { response, linkedSha256 } = await hubRequest(t, url, have > 0 ? { range: `bytes=${have}-` } : {}, signal);
  let offset = 0;
  if (response.status === 206) {
    offset = rangeStart(response.headers.get('content-range')) ?? -1;
    if (offset !== have) {
      await response.body?.cancel();
      throw new HubError(`${url}: asked for bytes from ${have}, got "${response.headers.get('content-range')}"`, 206, url);
    }
  }
  // 200: the whole file (the server ignored the Range, or there was nothing to resume).
  const handle = await fs.promises.open(part, offset === 0 ? 'w' : 'r+');
  let written = offset;
  try {
    if (response.body) {
      for await (const chunk of response.body) {
        if (written + chunk.byteLength > file.size) throw new HubError(`${url}: more than the ${file.size} bytes the listing gives`, response.status, url);
        await handle.write(chunk, 0, chunk.byteLength, written);
        written += chunk.byteLength;
        onBytes(written);
      }
    }
    await handle.sync();
  } catch (err) {
    if (signal.aborted) throw new CancelledError();
    if (err instanceof HubError) throw err;
    throw new HubError(`${url}: connection lost after ${written} of ${file.size} bytes (${(err as Error).message})`, null, url);
  } finally {
    await handle.close();
  }
  return linkedSha256;
}

const retryable = (err: unknown): boolean => err instanceof HubError && (err.status === null || err.status >= 500);

/**
 * Downloads `file` from `url` to `dir/file.path` through its .part file,
 * resuming what an earlier attempt left. `onBytes(n)` reports the bytes of
 * the .part file (it can go back to 0 when a server ignores the Range).
 */
export async function downloadFile(t: HubTarget, url: string, dir: string, file: RepoFile, onBytes: (n: number) => void, signal: AbortSignal): Promise<void> {
  const dest = path.join(dir, file.path);
  const part = partName(dest);
  if (sizeOf(part) > file.size) fs.rmSync(part);
  onBytes(sizeOf(part));
  let expected = file;
  for (let n = 1; sizeOf(part) < file.size || !fs.existsSync(part); n++) {
    try {
      const linked = await attempt(t, url, part, file, onBytes, signal);
      // The Hub also announces an LFS file's sha256 on its redirect; a listing without it is completed from there.
      if (linked && !expected.sha256) expected = { ...expected, sha256: linked };
      if (sizeOf(part) < file.size) throw new HubError(`${url}: the response ended after ${sizeOf(part)} of ${file.size} bytes`, null, url);
    } catch (err) {
      if (!retryable(err) || n >= ATTEMPTS) throw err;
      await delay(RETRY_DELAY_MS * n, signal);
    }
  }
  const problem = await verifyFile(part, expected);
  if (problem) {
    fs.rmSync(part, { force: true });
    throw new Error(`${url}: rejected the download (${problem})`);
  }
  fs.renameSync(part, dest);
  fsyncDir(dir);
}
