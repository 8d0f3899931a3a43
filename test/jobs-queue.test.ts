// The engine's job lanes as the UI sees them: a job behind another is
// announced as waiting for it (by title) until its turn, cancelling it ends it
// at once without running its work, and a job names the run it records.
import { describe, expect, it } from 'vitest';
import { JobManager } from '../engine/server/jobs';
import type { JobSnapshot } from '../engine/protocol/protocol';

/** A promise and the function that settles it. */
function gate() {
  let open!: () => void;
  const done = new Promise<void>((r) => (open = r));
  return { done, open };
}

function manager() {
  const events: JobSnapshot[] = [];
  const waiters: (() => void)[] = [];
  const jobs = new JobManager((j) => {
    events.push(j);
    for (const w of waiters.splice(0)) w();
  });
  const last = (id: string) => events.filter((e) => e.id === id).at(-1)!;
  /** Resolves once job `id` has been announced as ended. */
  const ended = async (id: string) => {
    while (last(id).state === 'running') await new Promise<void>((r) => waiters.push(r));
  };
  return { jobs, events, last, ended };
}

const pullResult = { modelId: 1, name: 'm', bytes: 0, commit: 'c', alreadyRecorded: false };

describe('job lanes', () => {
  it('a job behind another waits for it by title, then starts once it ends', async () => {
    const { jobs, last, ended } = manager();
    const first = gate();
    const a = jobs.start('pull', 'measuring latency', async () => (await first.done, pullResult), 'train');
    let secondStarted = false;
    const b = jobs.start('pull', 'sharing tiny', async () => ((secondStarted = true), pullResult), 'train');
    const other = jobs.start('pull', 'downloading', async () => pullResult, 'download');
    expect(last(a).waitingFor).toBeUndefined();
    expect(last(b)).toMatchObject({ state: 'running', waitingFor: 'measuring latency' });
    await ended(other);
    expect(last(other).state).toBe('done'); // another lane does not wait
    expect(secondStarted).toBe(false);
    first.open();
    await jobs.idle();
    expect(secondStarted).toBe(true);
    expect(last(b)).toMatchObject({ state: 'done' });
    expect(last(b).waitingFor).toBeUndefined();
  });

  it('cancelling a waiting job ends it at once, its work never runs, and those behind it wait for the running one', async () => {
    const { jobs, last } = manager();
    const first = gate();
    const a = jobs.start('pull', 'first', async () => (await first.done, pullResult), 'train');
    let ran = false;
    const b = jobs.start('pull', 'second', async () => ((ran = true), pullResult), 'train');
    const c = jobs.start('pull', 'third', async () => pullResult, 'train');
    expect(last(c).waitingFor).toBe('first');
    expect(jobs.cancel(b)).toBe(true);
    expect(last(b).state).toBe('cancelled');
    expect(jobs.cancel(b)).toBe(false);
    first.open();
    await jobs.idle();
    expect(ran).toBe(false);
    expect(last(a).state).toBe('done');
    expect(last(c).state).toBe('done');
  });

  it('a job names its run from its start (resumed) or from the progress that first names it; forRun finds it while unfinished', async () => {
    const { jobs, events, last } = manager();
    const go = gate();
    const resumed = jobs.start('pull', 'resumed', async () => (await go.done, pullResult), 'train', 7);
    expect(last(resumed).runId).toBe(7);
    const named = gate();
    const fresh = jobs.start(
      'pull',
      'fresh',
      async (ctx) => {
        ctx.progress({ phase: 'starting', runId: 8 });
        ctx.progress({ phase: 'step', done: 1, total: 9 }); // later progress does not repeat it
        named.open();
        return pullResult;
      },
      'train',
    );
    expect(jobs.forRun(7)?.id).toBe(resumed);
    go.open();
    await named.done;
    // The progress that names the run is announced even inside the throttle window.
    expect(events.some((e) => e.id === fresh && e.runId === 8 && e.progress?.phase === 'starting')).toBe(true);
    await jobs.idle();
    expect(last(fresh).runId).toBe(8);
    expect(jobs.forRun(7)).toBeUndefined();
  });
});
