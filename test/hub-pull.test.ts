// `pull` against a fake Hugging Face Hub (helpers/fake-hub.ts): sharded and
// .bin repos, interrupted, stalled, corrupt and non-resumable transfers,
// gated repos, cancellation, and the `mlw pull` command.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pullModel, folderName, type PullResult } from '../engine/hub/pull';
import { readOrigin } from '../engine/hub/origin';
import { CancelledError, type JobContext, type JobProgress } from '../engine/jobs/job';
import { SafetensorsFile, safetensorsHeader } from '../engine/io/safetensors';
import { openWeights } from '../engine/io/checkpoint';
import { openStore } from '../engine/store/open';
import { formatBytes } from '../engine/protocol/sizes';
import type { Store } from '../engine/store/store';
import { goldenDir } from './helpers/golden';
import { listen, sha256, startFakeHub, tinyRepo, type Behaviour, type FakeHub, type FakeRepo, type Logged } from './helpers/fake-hub';
import { tempDir } from './helpers/train-fixtures';
import { mlwProcess as runMlw, type MlwResult } from './helpers/mlw-process';

let fake: FakeHub;
let repos: Map<string, FakeRepo>;
let log: Logged[];
let behaviour: Behaviour;
let hubUrl: string;

/** tiny-gqa's weights split over two safetensors shards with an index, as transformers writes them. */
function shardedRepo(): FakeRepo {
  const st = SafetensorsFile.open(path.join(goldenDir('tiny-gqa'), 'model.safetensors'));
  const names = st.names();
  const halves = [names.slice(0, names.length / 2), names.slice(names.length / 2)];
  const files = new Map<string, Buffer>([['config.json', fs.readFileSync(path.join(goldenDir('tiny-gqa'), 'config.json'))]]);
  const weightMap: Record<string, string> = {};
  halves.forEach((group, i) => {
    const shard = `model-0000${i + 1}-of-00002.safetensors`;
    const raws = group.map((n) => [n, st.read(n)] as const);
    files.set(shard, Buffer.concat([safetensorsHeader(raws.map(([n, r]) => [n, { dtype: r.dtype, shape: r.shape }])), ...raws.map(([, r]) => r.data)]));
    for (const n of group) weightMap[n] = shard;
  });
  st.close();
  files.set('model.safetensors.index.json', Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })));
  return { files, lfs: new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']), commit: crypto.randomBytes(20).toString('hex') };
}

/** A JobContext that records every progress report; `onProgress` may abort. */
function recorder(onProgress?: (p: JobProgress, abort: () => void) => void): { ctx: JobContext; events: JobProgress[] } {
  const controller = new AbortController();
  const events: JobProgress[] = [];
  return {
    events,
    ctx: {
      signal: controller.signal,
      progress: (p) => {
        events.push(p);
        onProgress?.(p, () => controller.abort());
      },
    },
  };
}

/** Bytes loaded only go up, the total never changes, and the last report is at the total. */
function expectHonestProgress(events: JobProgress[], total: number): void {
  const bars = events.filter((e) => e.total !== undefined);
  expect(bars.length).toBeGreaterThan(0);
  for (const e of bars) expect(e.total).toBe(total);
  for (let i = 1; i < bars.length; i++) expect(bars[i].done!).toBeGreaterThanOrEqual(bars[i - 1].done!);
  expect(bars.at(-1)!.done).toBe(total);
}

const cdnRequests = (): Logged[] => log.filter((l) => l.server === 'cdn');

let root: string;
let home: string;
let store: Store;

beforeAll(async () => {
  fake = await startFakeHub();
  ({ repos, log, hubUrl } = fake);
});

afterAll(() => fake.close());

beforeEach(() => {
  fake.reset();
  behaviour = fake.behaviour();
  root = tempDir('hub');
  home = path.join(root, 'home');
  store = openStore({ home });
});

afterEach(() => {
  store.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const pull = (repo: string, ctx: JobContext, extra: { revision?: string; token?: string } = {}): Promise<PullResult> =>
  pullModel({ store, repo, endpoint: hubUrl, ...extra }, ctx);

describe('pull', () => {
  it('downloads config, safetensors weights and tokenizer, verified, and records the model', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const { ctx, events } = recorder();
    const r = await pull('meta/tiny', ctx);

    const dir = path.join(home, 'models', 'meta--tiny');
    expect(r.model.path).toBe(dir);
    expect(r.files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']); // no .bin beside safetensors, no README, no subfolders
    expect(fs.readdirSync(dir).sort()).toEqual(['.mlw-origin.json', 'config.json', 'model.safetensors', 'tokenizer.json']); // no .part, no lock; where it came from
    expect(readOrigin(dir)).toEqual({ repo: 'meta/tiny', revision: 'main', commit: repo.commit });
    for (const f of r.files) expect(fs.readFileSync(path.join(dir, f.path)).equals(repo.files.get(f.path)!)).toBe(true);
    expect(r.commit).toBe(repo.commit);
    // every file comes from the commit the revision pointed at
    expect(log.filter((l) => l.url.includes('/resolve/')).every((l) => l.url.includes(`/resolve/${repo.commit}/`))).toBe(true);

    const total = ['config.json', 'model.safetensors', 'tokenizer.json'].reduce((n, f) => n + repo.files.get(f)!.length, 0);
    expectHonestProgress(events, total);
    expect(r.bytes).toBe(total);

    const rows = store.models.list();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: r.model.id, name: 'meta/tiny', source: 'downloaded', format: 'safetensors', path: dir, bytes: total });
    expect(rows[0].paramCount).toBeGreaterThan(100_000);
    expect(rows[0].config).toMatchObject({ hidden_size: 64 });
  });

  it('downloads sharded safetensors with their index', async () => {
    const repo = shardedRepo();
    repos.set('meta/sharded', repo);
    const r = await pull('meta/sharded', recorder().ctx, { revision: repo.commit });
    expect(r.files.map((f) => f.path)).toEqual([
      'config.json',
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    expect(path.basename(r.model.path)).toBe(`meta--sharded--${repo.commit}`);
    expect(r.model.name).toBe(`meta/sharded@${repo.commit}`);
    expect(r.model.format).toBe('safetensors-sharded');
    const { source } = openWeights(r.model.path);
    expect(source.names().length).toBeGreaterThan(10);
    source.close();
  });

  it('resumes a transfer the server broke off halfway with a Range request, ending with identical bytes', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const weights = repo.files.get('model.safetensors')!;
    behaviour.cutOnce.add(sha256(weights));
    const { ctx, events } = recorder();
    const r = await pull('meta/tiny', ctx);

    const requests = cdnRequests().filter((l) => l.url === `/lfs/${sha256(weights)}`);
    expect(requests).toHaveLength(2);
    expect(requests[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(requests[1].range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThan(weights.length);
    expect(fs.readFileSync(path.join(r.model.path, 'model.safetensors')).equals(weights)).toBe(true);
    expectHonestProgress(events, r.bytes);
  });

  it('continues the .part file an interrupted pull left behind', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const weights = repo.files.get('model.safetensors')!;
    behaviour.stallOnce.add(sha256(weights));
    const first = recorder((p, abort) => {
      if (p.phase === 'downloading model.safetensors' && p.done! > weights.length / 4) abort();
    });
    await expect(pull('meta/tiny', first.ctx)).rejects.toBeInstanceOf(CancelledError);
    const part = path.join(home, 'models', 'meta--tiny', 'model.safetensors.part');
    const left = fs.statSync(part).size;
    expect(left).toBeGreaterThan(0);
    expect(store.models.list()).toHaveLength(0);

    const second = recorder();
    const r = await pull('meta/tiny', second.ctx);
    expect(cdnRequests().at(-1)!.range).toBe(`bytes=${left}-`);
    expect(r.files.find((f) => f.path === 'model.safetensors')).toMatchObject({ present: false, resumedFrom: left });
    expect(r.files.find((f) => f.path === 'config.json')).toMatchObject({ present: true });
    expect(fs.readFileSync(path.join(r.model.path, 'model.safetensors')).equals(weights)).toBe(true);
    expectHonestProgress(second.events, r.bytes);
    // what the first pull had already fetched counts as done from the start
    expect(second.events.find((e) => e.total !== undefined)!.done).toBeGreaterThanOrEqual(repo.files.get('config.json')!.length);
  });

  it('starts a file over when the server ignores Range, and progress still never goes back', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const weights = repo.files.get('model.safetensors')!;
    const dir = path.join(home, 'models', 'meta--tiny');
    fs.mkdirSync(dir, { recursive: true });
    const half = Math.floor(weights.length / 2); // more than the first chunks of the restarted transfer
    fs.writeFileSync(path.join(dir, 'model.safetensors.part'), weights.subarray(0, half));
    behaviour.ignoreRange = true;
    const { ctx, events } = recorder();
    const r = await pull('meta/tiny', ctx);
    expect(cdnRequests().at(-1)!.range).toBe(`bytes=${half}-`);
    expect(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(weights)).toBe(true);
    expectHonestProgress(events, r.bytes);
  });

  it('explains a gated repo without a token, refuses a wrong token, and sends the right one to the Hub only', async () => {
    repos.set('facebook/MobileLLM-tiny', tinyRepo({ token: 'hf_secret' }));
    const noToken = pull('facebook/MobileLLM-tiny', recorder().ctx);
    await expect(noToken).rejects.toThrow(
      `facebook/MobileLLM-tiny is gated: accept the license at ${hubUrl}/facebook/MobileLLM-tiny, create a read token at ${hubUrl}/settings/tokens, then run with --token or HF_TOKEN (HTTP 401)`,
    );
    await expect(pull('facebook/MobileLLM-tiny', recorder().ctx, { token: 'hf_wrong' })).rejects.toThrow(
      /no access to facebook\/MobileLLM-tiny yet: accept the license/,
    );
    expect(store.models.list()).toHaveLength(0);

    log.length = 0;
    const r = await pull('facebook/MobileLLM-tiny', recorder().ctx, { token: 'hf_secret' });
    expect(r.model.name).toBe('facebook/MobileLLM-tiny');
    expect(log.filter((l) => l.server === 'hub').every((l) => l.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdnRequests().length).toBeGreaterThan(0);
    expect(cdnRequests().every((l) => l.authorization === undefined)).toBe(true);
  });

  it('rejects a file whose sha256 does not match the listing and records nothing', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const weights = repo.files.get('model.safetensors')!;
    const bad = Buffer.from(weights);
    bad[bad.length - 1] ^= 0xff;
    behaviour.corrupt.set(sha256(weights), bad);
    await expect(pull('meta/tiny', recorder().ctx)).rejects.toThrow(/model\.safetensors: rejected the download \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\)/);
    const dir = path.join(home, 'models', 'meta--tiny');
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'model.safetensors.part'))).toBe(false);
    expect(store.models.list()).toHaveLength(0);
  });

  it('pulling again verifies what is there: a changed small file (git blob id) is fetched again, nothing else', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const r = await pull('meta/tiny', recorder().ctx);
    const config = path.join(r.model.path, 'config.json');
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('"hidden_size": 64', '"hidden_size": 65'));
    log.length = 0;
    const again = await pull('meta/tiny', recorder().ctx);
    expect(again.alreadyRecorded).toBe(true);
    expect(again.model.id).toBe(r.model.id);
    expect(again.files.map((f) => [f.path, f.present])).toEqual([
      ['config.json', false],
      ['model.safetensors', true],
      ['tokenizer.json', true],
    ]);
    expect(fs.readFileSync(config).equals(repo.files.get('config.json')!)).toBe(true);
    expect(cdnRequests()).toHaveLength(0);
    expect(store.models.list()).toHaveLength(1);
  });

  it('says what is missing: repo, revision, weights, or the server itself', async () => {
    await expect(pull('meta/none', recorder().ctx)).rejects.toThrow(`meta/none not found on ${hubUrl} (if it is private, run with --token or HF_TOKEN)`);
    repos.set('meta/tiny', tinyRepo());
    await expect(pull('meta/tiny', recorder().ctx, { revision: 'v9' })).rejects.toThrow('revision "v9" not found in meta/tiny');
    const noWeights = tinyRepo();
    noWeights.files.delete('model.safetensors');
    noWeights.files.delete('pytorch_model.bin');
    repos.set('meta/empty', noWeights);
    await expect(pull('meta/empty', recorder().ctx)).rejects.toThrow('meta/empty@main has no weights');
    const bert = tinyRepo();
    bert.files.set('config.json', Buffer.from('{"model_type":"bert","hidden_size":64}'));
    repos.set('meta/bert', bert);
    await expect(pull('meta/bert', recorder().ctx)).rejects.toThrow(/^meta\/bert@main is not a loadable MobileLLM: .*config\.json/);
    expect(cdnRequests()).toHaveLength(0); // refused before the weights
    const closed = await listen(() => {});
    closed[0].close();
    await expect(pullModel({ store, repo: 'meta/tiny', endpoint: closed[1] }, recorder().ctx)).rejects.toThrow(
      new RegExp(`^cannot reach ${closed[1]}/api/models/meta/tiny/revision/main\\?.*ECONNREFUSED`),
    );
    expect(store.models.list()).toHaveLength(0);
  });

  it('refuses, in one line and before any download, a repo larger than the free disk space; counts what is on disk already', async () => {
    const repo = tinyRepo();
    repos.set('meta/tiny', repo);
    const total = ['config.json', 'model.safetensors', 'tokenizer.json'].reduce((n, f) => n + repo.files.get(f)!.length, 0);
    const pullWithin = (free: number) => pullModel({ store, repo: 'meta/tiny', endpoint: hubUrl, freeBytes: () => free }, recorder().ctx);
    const refusal = pullWithin(total - 1);
    await expect(refusal).rejects.toThrow(
      `not enough disk space for meta/tiny@main: it needs ${formatBytes(total)} and ${home}/models has ${formatBytes(total - 1)} free`,
    );
    expect(log.filter((l) => l.url.includes('/resolve/'))).toHaveLength(0);
    expect(fs.existsSync(path.join(home, 'models', 'meta--tiny'))).toBe(false);
    expect(store.models.list()).toHaveLength(0);
    // With the weights on disk already, only the rest must fit.
    const dir = path.join(home, 'models', 'meta--tiny');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'model.safetensors'), repo.files.get('model.safetensors')!);
    const r = await pullWithin(total - repo.files.get('model.safetensors')!.length);
    expect(r.files.find((f) => f.path === 'model.safetensors')?.present).toBe(true);
  });

  it('takes the .bin weights when the repo has no safetensors', async () => {
    const repo = tinyRepo();
    repo.files.delete('model.safetensors');
    repos.set('meta/bin', repo);
    const r = await pull('meta/bin', recorder().ctx);
    expect(r.files.map((f) => f.path)).toEqual(['config.json', 'pytorch_model.bin', 'tokenizer.json']);
    expect(r.model.format).toBe('pytorch-bin');
  });

  it('names folders <owner>--<name>[--<revision>]', () => {
    expect(folderName('facebook/MobileLLM-125M', 'main')).toBe('facebook--MobileLLM-125M');
    expect(folderName('facebook/MobileLLM-125M', 'refs/pr/3')).toBe('facebook--MobileLLM-125M--refs-pr-3');
  });
});

// ---------------------------------------------------------------- the CLI

function mlw(args: string[], env: Record<string, string> = {}): Promise<MlwResult> {
  return runMlw(['--home', home, ...args], { HF_TOKEN: '', HF_ENDPOINT: '', ...env });
}

describe('mlw pull', () => {
  it('exit 0 with JSON; HF_TOKEN and HF_ENDPOINT from the environment', async () => {
    repos.set('facebook/MobileLLM-tiny', tinyRepo({ token: 'hf_secret' }));
    const r = await mlw(['pull', 'facebook/MobileLLM-tiny', '--json'], { HF_TOKEN: 'hf_secret', HF_ENDPOINT: hubUrl });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ name: 'facebook/MobileLLM-tiny', repo: 'facebook/MobileLLM-tiny', revision: 'main', alreadyRecorded: false });
    expect(store.models.get(out.modelId).source).toBe('downloaded');
  });

  it('exit 1 with one line for a gated repo, exit 2 for a malformed id', async () => {
    repos.set('facebook/MobileLLM-tiny', tinyRepo({ token: 'hf_secret' }));
    const gated = await mlw(['pull', 'facebook/MobileLLM-tiny', '--endpoint', hubUrl]);
    expect(gated.code).toBe(1);
    // (progress lines come first when stderr is not a terminal)
    expect(gated.stderr.trimEnd().split('\n').at(-1)).toBe(
      `mlw: error: facebook/MobileLLM-tiny is gated: accept the license at ${hubUrl}/facebook/MobileLLM-tiny, create a read token at ${hubUrl}/settings/tokens, then run with --token or HF_TOKEN (HTTP 401)`,
    );
    expect(gated.stderr.match(/mlw: /g)).toHaveLength(1);
    const bad = await mlw(['pull', 'not a repo', '--endpoint', hubUrl]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mlw: pull: "not a repo" is not a Hub model id/);
  });
});
