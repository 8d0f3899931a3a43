// `pull` as a job: a model repo of the Hugging Face Hub → a verified model
// folder <home>/models/<owner>--<name>[--<revision>] recorded in the store.
//
// Progress is one bar over the bytes of every file (done only goes up, the
// total is fixed once the files are listed, and it ends at the total); bytes
// an earlier, interrupted pull left in .part files count as done from the
// start. Running the same pull again resumes it; pulling a model that is
// already complete checks its files and downloads nothing. A complete folder
// records where it came from (origin.ts). A pull the disk has no room for is
// refused before any weight is fetched.
import fs from 'node:fs';
import path from 'node:path';
import { readConfig } from '../io/checkpoint';
import { throwIfCancelled, type JobContext } from '../jobs/job';
import { countParams } from '../model/config';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { isLocalPidAlive } from '../store/liveness';
import type { Model } from '../store/records';
import type { Store } from '../store/store';
import { envEndpoint, envToken, isRepoId, listRepoFiles, resolveCommit, resolveUrl, type HubTarget } from './api';
import { downloadFile, partName, verifyFile } from './download';
import { pickModelFiles } from './files';
import { writeOrigin } from './origin';
import { formatBytes } from '../protocol/sizes';

export interface PullParams {
  store: Store;
  /** owner/name, e.g. facebook/MobileLLM-125M */
  repo: string;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** Access token for gated and private repos (default: HF_TOKEN). */
  token?: string;
  /** Default: HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** Bytes free on the disk holding `dir` (default: what the file system says; tests give a small limit). */
  freeBytes?: (dir: string) => number;
}

const diskFreeBytes = (dir: string): number => {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Bytes of `files` still to download into `dir`: what a complete file or an earlier .part file holds is there already. */
function bytesStillNeeded(dir: string, files: { path: string; size: number }[]): number {
  const onDisk = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
  return files.reduce((n, f) => {
    const dest = path.join(dir, f.path);
    return n + Math.max(0, f.size - Math.max(onDisk(dest), onDisk(partName(dest))));
  }, 0);
}

export interface PulledFile {
  path: string;
  size: number;
  sha256: string | null;
  /** Already complete in the folder before this pull (verified, not downloaded again). */
  present: boolean;
  /** Bytes an earlier, interrupted pull had left in its .part file (the download went on from there). */
  resumedFrom: number;
}

export interface PullResult {
  model: Model;
  /** The model was already recorded (a pull of a complete folder). */
  alreadyRecorded: boolean;
  repo: string;
  revision: string;
  /** The commit every file was taken from. */
  commit: string;
  files: PulledFile[];
  /** Bytes of all the files. */
  bytes: number;
}

/** <owner>--<name>, plus --<revision> for anything but main. */
export function folderName(repo: string, revision: string): string {
  const base = repo.replace('/', '--');
  return revision === 'main' ? base : `${base}--${revision.replace(/[^\w.-]+/g, '-')}`;
}

const LOCK = '.mlw-pull.lock';

/** Runs `fn` holding `dir`'s pull lock: one pull per folder at a time, a dead holder's lock is taken over. */
async function withPullLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, LOCK);
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(lock, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && isLocalPidAlive(pid))
        throw new Error(`${dir}: process ${pid} is downloading into this folder (if it is not, delete ${lock})`, { cause: err });
      fs.rmSync(lock, { force: true });
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * Bytes done across files, never going back: a file that restarts from 0 (a
 * server ignoring Range) counts again only once it passes where it was.
 */
class ByteProgress {
  private readonly reached = new Map<string, number>();
  private lastTouch = Date.now();

  constructor(
    private readonly ctx: JobContext,
    private readonly dir: string,
    readonly total: number,
  ) {}

  done(): number {
    let n = 0;
    for (const v of this.reached.values()) n += v;
    return n;
  }

  update(file: string, bytes: number, phase: string): void {
    this.reached.set(file, Math.max(this.reached.get(file) ?? 0, bytes));
    this.ctx.progress({ phase, done: this.done(), total: this.total, unit: 'bytes' });
    // A folder not yet recorded is an orphan to `mlw gc` once older than its grace period: keep it young while writing.
    const now = Date.now();
    if (now - this.lastTouch > 60_000) {
      this.lastTouch = now;
      fs.utimesSync(this.dir, now / 1000, now / 1000);
    }
  }
}

/** `check()`'s result, or its error as "<repo>@<rev> is not a loadable MobileLLM: …". */
function notMobileLLM<T>(where: string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw new Error(`${where} is not a loadable MobileLLM: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
}

export async function pullModel(params: PullParams, ctx: JobContext): Promise<PullResult> {
  const revision = params.revision ?? 'main';
  if (!isRepoId(params.repo)) throw new Error(`"${params.repo}" is not a Hub model id (owner/name)`);
  const t: HubTarget = { endpoint: (params.endpoint ?? envEndpoint()).replace(/\/+$/, ''), repo: params.repo, revision, token: params.token ?? envToken() };
  const where = `${t.repo}@${revision}`;

  ctx.progress({ phase: `listing ${where}` });
  const commit = await resolveCommit(t, ctx.signal);
  const files = pickModelFiles(await listRepoFiles(t, commit, ctx.signal), where);
  const dir = path.join(params.store.layout.models, folderName(t.repo, revision));
  fs.mkdirSync(dir, { recursive: true });
  const needed = bytesStillNeeded(dir, files);
  const free = (params.freeBytes ?? diskFreeBytes)(dir);
  if (needed > free) {
    if (fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
    throw new Error(`not enough disk space for ${where}: it needs ${formatBytes(needed)} and ${params.store.layout.models} has ${formatBytes(free)} free`);
  }

  return withPullLock(dir, async () => {
    const progress = new ByteProgress(
      ctx,
      dir,
      files.reduce((n, f) => n + f.size, 0),
    );
    const pulled: PulledFile[] = [];
    for (const file of files) {
      throwIfCancelled(ctx.signal);
      const dest = path.join(dir, file.path);
      const present = fs.existsSync(dest) && (await verifyFile(dest, file)) === null;
      let resumedFrom = -1;
      if (present) {
        progress.update(file.path, file.size, `have ${file.path}`);
      } else {
        await downloadFile(
          t,
          resolveUrl(t, commit, file.path),
          dir,
          file,
          (n) => {
            if (resumedFrom < 0) resumedFrom = n;
            progress.update(file.path, n, `downloading ${file.path}`);
          },
          ctx.signal,
        );
      }
      pulled.push({ path: file.path, size: file.size, sha256: file.sha256, present, resumedFrom: Math.max(resumedFrom, 0) });
      // A repo that is not a MobileLLM is refused before its weights are fetched.
      if (file.path === 'config.json') notMobileLLM(where, () => readConfig(dir));
    }

    const { folder, format } = notMobileLLM(where, () => {
      const folder = readModelFolder(dir);
      return { folder, ...checkModelFolder(folder) };
    });
    writeOrigin(dir, { repo: t.repo, revision, commit });
    const bytes = progress.total;
    const known = params.store.models.list().find((m) => path.resolve(m.path) === path.resolve(dir));
    const model =
      known ??
      params.store.models.add({
        name: revision === 'main' ? t.repo : `${t.repo}@${revision}`,
        source: 'downloaded',
        format,
        path: dir,
        config: folder.configJson ?? undefined,
        paramCount: countParams(folder.config).total,
        bytes,
      });
    return { model, alreadyRecorded: known !== undefined, repo: t.repo, revision, commit, files: pulled, bytes };
  });
}
