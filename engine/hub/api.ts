// Talking to the Hugging Face Hub, or any server with its URL layout:
//
//   GET {endpoint}/api/models/{repo}/revision/{rev}   the commit a revision points at  (modelInfo)
//   GET {endpoint}/api/models/{repo}/tree/{commit}    files, sizes, LFS sha256          (listFiles)
//   GET {endpoint}/{repo}/resolve/{commit}/{path}     a file; LFS files redirect to a CDN
//
// The listing calls go through @huggingface/hub; every request (theirs and our
// downloads) goes through hubRequest: the token is sent to the endpoint's host
// only, redirects are followed by hand so the Hub's X-Linked-* headers on the
// redirect are seen, the job's AbortSignal stops it, and an HTTP or network
// failure becomes one line that says what to do.
import { listFiles, modelInfo } from '@huggingface/hub';
import { z } from 'zod';
import { CancelledError } from '../jobs/job';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** The Hub address: HF_ENDPOINT when set, else huggingface.co. */
export const envEndpoint = (): string => process.env.HF_ENDPOINT || DEFAULT_ENDPOINT;

/** The access token the environment gives (HF_TOKEN), if any. */
export const envToken = (): string | undefined => process.env.HF_TOKEN || undefined;

export interface HubTarget {
  /** e.g. https://huggingface.co (no trailing slash). */
  endpoint: string;
  /** owner/name */
  repo: string;
  /** Branch, tag or commit. */
  revision: string;
  token?: string;
}

/** A failed request: `status` is null for a network error. */
export class HubError extends Error {
  override name = 'HubError';
  constructor(
    message: string,
    readonly status: number | null,
    readonly url: string,
  ) {
    super(message);
  }
}

/** A file of the repo as the tree listing describes it. */
export interface RepoFile {
  path: string;
  size: number;
  /** sha256 of the contents (LFS files only). */
  sha256: string | null;
  /** git blob sha1 of the contents (files stored in git itself, not in LFS). */
  gitOid: string | null;
}

const SHA256 = /^[0-9a-f]{64}$/;
const SHA1 = /^[0-9a-f]{40}$/;

const TreeEntry = z.object({
  type: z.string(),
  path: z.string().min(1),
  size: z.number().int().min(0),
  oid: z.string().optional(),
  lfs: z.object({ oid: z.string().regex(SHA256, 'not a sha256'), size: z.number().int().min(0) }).optional(),
});

const ModelRevision = z.object({ sha: z.string().regex(SHA1, 'not a commit id') });

/** owner/name, as the Hub allows them. */
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

export function isRepoId(repo: string): boolean {
  return REPO_ID.test(repo) && !repo.includes('--') && !repo.includes('..');
}

/** What an HTTP failure means for the person pulling, in one line. */
function explainFailure(t: HubTarget, status: number, errorCode: string | null, url: string): string {
  const license = `${t.endpoint}/${t.repo}`;
  const tokens = `${t.endpoint}/settings/tokens`;
  if (errorCode === 'RevisionNotFound') return `revision "${t.revision}" not found in ${t.repo}`;
  if (errorCode === 'EntryNotFound') return `file not found in ${t.repo}@${t.revision}: ${url}`;
  if (errorCode === 'RepoNotFound') return `${t.repo} not found on ${t.endpoint}${t.token ? '' : ' (if it is private, run with --token or HF_TOKEN)'}`;
  if (status === 404) return `${t.repo}@${t.revision} not found: HTTP 404 from ${url}`;
  if (status === 401 || status === 403) {
    if (!t.token) {
      return `${t.repo} is gated: accept the license at ${license}, create a read token at ${tokens}, then run with --token or HF_TOKEN (HTTP ${status})`;
    }
    if (status === 401) return `the access token was refused (HTTP 401 from ${url}): check it at ${tokens}`;
    return `this token has no access to ${t.repo} yet: accept the license at ${license} (approval can take a while) and check that the token may read gated repos at ${tokens} (HTTP 403)`;
  }
  return `HTTP ${status} from ${url}`;
}

export interface HubResponse {
  response: Response;
  /** sha256 the Hub announced for an LFS file (X-Linked-Etag on the redirect), if any. */
  linkedSha256: string | null;
}

const MAX_REDIRECTS = 10;

function networkFailure(url: string, err: unknown): HubError {
  const cause = (err as { cause?: { message?: string; code?: string } }).cause;
  const why = cause?.message ?? cause?.code ?? (err instanceof Error ? err.message : String(err));
  return new HubError(`cannot reach ${url}: ${why}`, null, url);
}

/**
 * One request to the Hub, redirects followed by hand. Resolves to the final
 * response when it is 2xx; throws HubError otherwise, CancelledError once
 * `signal` is aborted.
 */
export async function hubRequest(t: HubTarget, url: string, headers: Record<string, string>, signal: AbortSignal): Promise<HubResponse> {
  const origin = new URL(t.endpoint).origin;
  let linkedSha256: string | null = null;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    // The token goes to the Hub itself, never to the CDN it redirects to.
    const auth: Record<string, string> = t.token && new URL(current).origin === origin ? { authorization: `Bearer ${t.token}` } : {};
    let response: Response;
    try {
      response = await fetch(current, { headers: { ...headers, ...auth }, redirect: 'manual', signal });
    } catch (err) {
      if (signal.aborted) throw new CancelledError();
      throw networkFailure(current, err);
    }
    const etag = response.headers.get('x-linked-etag')?.replace(/^(W\/)?"|"$/g, '');
    if (etag && SHA256.test(etag)) linkedSha256 = etag;
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      current = new URL(location, current).href;
      continue;
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new HubError(explainFailure(t, response.status, response.headers.get('x-error-code'), current), response.status, current);
    }
    return { response, linkedSha256 };
  }
  throw new HubError(`more than ${MAX_REDIRECTS} redirects from ${url}`, null, url);
}

/** A fetch for @huggingface/hub's calls that goes through hubRequest. */
function libraryFetch(t: HubTarget, signal: AbortSignal): typeof fetch {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : input.toString();
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    return (await hubRequest(t, url, headers, signal)).response;
  };
}

function badResponse(url: string, what: string, error: z.ZodError): HubError {
  const issue = error.issues[0];
  return new HubError(`${url}: unexpected response (${what}${issue.path.length ? ` "${issue.path.join('.')}"` : ''}: ${issue.message})`, null, url);
}

/** The commit `t.revision` points at, so that every file comes from the same one. */
export async function resolveCommit(t: HubTarget, signal: AbortSignal): Promise<string> {
  const info = await modelInfo({ name: t.repo, revision: t.revision, hubUrl: t.endpoint, additionalFields: ['sha'], fetch: libraryFetch(t, signal) });
  const parsed = ModelRevision.safeParse(info);
  if (!parsed.success) throw badResponse(`${t.endpoint}/api/models/${t.repo}/revision/${t.revision}`, 'model info', parsed.error);
  return parsed.data.sha;
}

/** Every file of the repo at `commit` (recursively), with sizes and hashes. */
export async function listRepoFiles(t: HubTarget, commit: string, signal: AbortSignal): Promise<RepoFile[]> {
  const url = `${t.endpoint}/api/models/${t.repo}/tree/${commit}`;
  const files: RepoFile[] = [];
  for await (const item of listFiles({ repo: t.repo, revision: commit, recursive: true, hubUrl: t.endpoint, fetch: libraryFetch(t, signal) })) {
    const parsed = TreeEntry.safeParse(item);
    if (!parsed.success) throw badResponse(url, 'tree entry', parsed.error);
    const e = parsed.data;
    if (e.type !== 'file') continue;
    files.push({
      path: e.path,
      size: e.lfs?.size ?? e.size,
      sha256: e.lfs?.oid ?? null,
      gitOid: !e.lfs && e.oid && SHA1.test(e.oid) ? e.oid : null,
    });
  }
  return files;
}

export function resolveUrl(t: HubTarget, commit: string, file: string): string {
  return `${t.endpoint}/${t.repo}/resolve/${encodeURIComponent(commit)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}
