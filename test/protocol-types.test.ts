// The protocol's types hold the service to its schemas: a handler whose params
// or result disagree with its method's schemas does not compile (this file is
// type-checked with the rest by test/typecheck.test.ts, where an expected
// error that does not occur is itself an error). Every job kind's snapshot
// carries its result's schema.
import { describe, expect, it } from 'vitest';
import { JOB_RESULTS, JobSnapshot, requests, type Handler, type Handlers, type Method } from '../engine/protocol/protocol';

/** A handler for `method`, as the service's table types it. */
const handler = <M extends Method>(_method: M, h: Handler<M>): Handler<M> => h;

describe('handlers are typed by the protocol', () => {
  it('takes a handler that agrees with its schemas, and the compiler refuses one that does not', () => {
    const right = [handler('jobs.cancel', ({ mode }) => ({ cancelled: mode === 'cancel' })), handler('models.remove', () => ({ removed: true }))];
    const wrong = [
      // @ts-expect-error jobs.cancel's jobId is a string
      handler('jobs.cancel', (p: { jobId: number }) => ({ cancelled: p.jobId > 0 })),
      // @ts-expect-error quantize.start's method is any of w8a8, w8 and w4, not only w4
      handler('quantize.start', (p: { method: 'w4' }) => ({ jobId: p.method })),
      // @ts-expect-error eval.start's modelId is optional (a checkpointId may come instead)
      handler('eval.start', (p: { modelId: number }) => ({ jobId: String(p.modelId) })),
      // @ts-expect-error models.remove answers { removed: true }
      handler('models.remove', () => ({ removed: false })),
    ];
    expect([...right, ...wrong].every((h) => typeof h === 'function')).toBe(true);
  });

  it('has one handler per method in the service table type', () => {
    // @ts-expect-error a table without every method is not Handlers
    const partial: Handlers = { 'engine.status': () => ({ version: '', backend: '', threads: 0, rssBytes: 0, tensorBytes: 0, loadedModel: null, home: '' }) };
    expect(Object.keys(partial)).toEqual(['engine.status']);
  });

  it('gives every method a params and a result schema', () => {
    for (const [method, spec] of Object.entries(requests)) {
      expect(typeof spec.params.safeParse, method).toBe('function');
      expect(typeof spec.result.safeParse, method).toBe('function');
    }
  });
});

describe('job snapshots', () => {
  it("have one variant per job kind, whose result is that kind's", () => {
    expect(JobSnapshot.options.map((o) => o.shape.kind.value)).toEqual(Object.keys(JOB_RESULTS));
    const base = { id: 'j', title: 't', state: 'done', startedAt: 1 };
    const outcome = { runId: 1, status: 'completed', step: 6, checkpoint: null, modelId: 2 };
    expect(JobSnapshot.safeParse({ ...base, kind: 'finetune', result: outcome }).success).toBe(true);
    expect(JobSnapshot.safeParse({ ...base, kind: 'compare', result: outcome }).success).toBe(false);
    expect(JobSnapshot.safeParse({ ...base, kind: 'compare', result: { rows: [{ prompt: 'p', base: 'b', tuned: 't' }] } }).success).toBe(true);
    expect(JobSnapshot.safeParse({ ...base, kind: 'nope' }).success).toBe(false);
  });
});
