// A fake Hugging Face Hub on 127.0.0.1 with the Hub's URL layout: model info
// and a paginated tree listing (sizes, LFS sha256), resolve URLs that answer
// small files themselves and redirect LFS files (302, with X-Linked-Etag) to a
// CDN on another origin. The CDN can break a transfer halfway, stall, ignore
// Range, or serve corrupt bytes; a repo can be gated.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { goldenDir } from './golden';
import { tinyTokenizerJson } from './train-fixtures';

export const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
export const gitOid = (b: Buffer): string => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

export interface FakeRepo {
  files: Map<string, Buffer>;
  /** Files stored in LFS (redirected to the CDN, sha256 in the listing). */
  lfs: Set<string>;
  commit: string;
  /** A gated repo answers 401 without this bearer token and 403 with another. */
  token?: string;
}

export interface Behaviour {
  /** CDN: the first request for these sha256s sends half the bytes, then closes the socket. */
  cutOnce: Set<string>;
  /** CDN: the first request for these sha256s sends half the bytes, then stalls. */
  stallOnce: Set<string>;
  /** CDN: answer every request with the whole file (200), whatever its Range. */
  ignoreRange: boolean;
  /** CDN: serve these bytes instead of the file of this sha256 (same length, other content). */
  corrupt: Map<string, Buffer>;
}

export interface Logged {
  server: 'hub' | 'cdn';
  url: string;
  range?: string;
  authorization?: string;
}

const repos = new Map<string, FakeRepo>();
const log: Logged[] = [];
let behaviour: Behaviour = freshBehaviour();
let hubUrl: string;
let cdnUrl: string;

function freshBehaviour(): Behaviour {
  return { cutOnce: new Set(), stallOnce: new Set(), ignoreRange: false, corrupt: new Map() };
}

const PAGE = 2; // tree entries per page: the listing is followed through its Link headers

export function listen(handler: http.RequestListener): Promise<[http.Server, string]> {
  const server = http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve([server, `http://127.0.0.1:${(server.address() as { port: number }).port}`])));
}

function fail(res: http.ServerResponse, status: number, code: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code });
  res.end(JSON.stringify({ error: code }));
}

function hubHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!, hubUrl);
  log.push({ server: 'hub', url: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
  const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
  const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  const repoId = api?.[1] ?? resolve?.[1];
  const repo = repoId ? repos.get(repoId) : undefined;
  if (!repo) return fail(res, 404, 'RepoNotFound');
  if (repo.token) {
    const auth = req.headers.authorization;
    if (!auth) return fail(res, 401, 'GatedRepo');
    if (auth !== `Bearer ${repo.token}`) return fail(res, 403, 'GatedRepo');
  }
  const rev = decodeURIComponent(api?.[3] ?? resolve![2]);
  if (rev !== 'main' && rev !== repo.commit) return fail(res, 404, 'RevisionNotFound');
  if (api?.[2] === 'revision') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(
      JSON.stringify({
        _id: 'x',
        id: repoId,
        sha: repo.commit,
        private: false,
        gated: repo.token ? 'manual' : false,
        downloads: 0,
        likes: 0,
        lastModified: '2024-01-01T00:00:00.000Z',
      }),
    );
  }
  if (api) {
    const entries = [...repo.files].map(([p, b]) => ({
      type: 'file',
      path: p,
      size: b.length,
      oid: repo.lfs.has(p) ? 'f'.repeat(40) : gitOid(b),
      ...(repo.lfs.has(p) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : {}),
    }));
    const from = Number(url.searchParams.get('cursor') ?? 0);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (from + PAGE < entries.length) headers.link = `<${hubUrl}${url.pathname}?recursive=true&cursor=${from + PAGE}>; rel="next"`;
    res.writeHead(200, headers);
    return void res.end(JSON.stringify(entries.slice(from, from + PAGE)));
  }
  const file = decodeURIComponent(resolve![3]);
  const body = repo.files.get(file);
  if (!body) return fail(res, 404, 'EntryNotFound');
  if (repo.lfs.has(file)) {
    res.writeHead(302, {
      location: `${cdnUrl}/lfs/${sha256(body)}`,
      'x-linked-etag': `"${sha256(body)}"`,
      'x-linked-size': String(body.length),
      'x-repo-commit': repo.commit,
    });
    return void res.end();
  }
  res.writeHead(200, { 'content-length': body.length, etag: `"${gitOid(body)}"`, 'x-repo-commit': repo.commit });
  res.end(body);
}

function cdnHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  log.push({ server: 'cdn', url: req.url!, range: req.headers.range, authorization: req.headers.authorization });
  const hash = /^\/lfs\/([0-9a-f]{64})$/.exec(req.url!)?.[1];
  const original = [...repos.values()].flatMap((r) => [...r.files.values()]).find((b) => sha256(b) === hash);
  if (!hash || !original) return void res.writeHead(404).end();
  const body = behaviour.corrupt.get(hash) ?? original;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range && !behaviour.ignoreRange ? Number(range[1]) : 0;
  const rest = body.subarray(start);
  res.writeHead(start > 0 ? 206 : 200, {
    'content-length': rest.length,
    'accept-ranges': 'bytes',
    ...(start > 0 ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  const half = Math.floor(rest.length / 2);
  if (behaviour.cutOnce.delete(hash)) return void res.write(rest.subarray(0, half), () => setTimeout(() => res.socket?.destroy(), 20));
  if (behaviour.stallOnce.delete(hash)) return void res.write(rest.subarray(0, half));
  res.end(rest);
}

/** tiny-gqa as a Hub repo: config.json and tokenizer.json in git, the weights in LFS, and files pull must skip. */
export function tinyRepo(extra: Partial<FakeRepo> = {}): FakeRepo {
  const g = goldenDir('tiny-gqa');
  const files = new Map<string, Buffer>([
    ['config.json', fs.readFileSync(path.join(g, 'config.json'))],
    ['model.safetensors', fs.readFileSync(path.join(g, 'model.safetensors'))],
    ['tokenizer.json', Buffer.from(JSON.stringify(tinyTokenizerJson()))],
    ['pytorch_model.bin', fs.readFileSync(path.join(goldenDir('tiny-gqa-bin'), 'pytorch_model.bin'))],
    ['README.md', Buffer.from('# tiny\n')],
    ['onnx/model.onnx', Buffer.from('not needed')],
  ]);
  return { files, lfs: new Set(['model.safetensors', 'pytorch_model.bin', 'onnx/model.onnx']), commit: crypto.randomBytes(20).toString('hex'), ...extra };
}

/** The fake Hub and its CDN, listening; `reset` forgets repos, log and behaviour. */
export interface FakeHub {
  repos: Map<string, FakeRepo>;
  log: Logged[];
  behaviour: () => Behaviour;
  hubUrl: string;
  cdnUrl: string;
  reset(): void;
  close(): Promise<void>;
}

/** One fake Hub per test file (its state is module-wide). */
export async function startFakeHub(): Promise<FakeHub> {
  const [hub, hu] = await listen(hubHandler);
  const [cdn, cu] = await listen(cdnHandler);
  hubUrl = hu;
  cdnUrl = cu;
  return {
    repos,
    log,
    behaviour: () => behaviour,
    hubUrl,
    cdnUrl,
    reset() {
      repos.clear();
      log.length = 0;
      behaviour = freshBehaviour();
    },
    async close() {
      for (const s of [hub, cdn]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    },
  };
}
