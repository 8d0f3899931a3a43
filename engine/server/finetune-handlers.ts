// The fine-tuning wizard's requests: inspect a dataset (validation errors with
// line numbers, summary, rendered preview), estimate memory/time, start and
// resume runs (in a child process; the job names its run), compare base and fine-tuned answers.
import path from 'node:path';
import type { EngineService } from './service';
import type { DatasetInspection, FinetuneEstimate, FinetuneRequest, CompareRow, ValidParams } from '../protocol/protocol';
import { loadTokenizer } from '../tokenizer/tokenizer';
import { parseDataset, rowSegments, tokenizeRows } from '../train/datasets';
import { estimateRun, prepareData } from '../train/run';
import type { FinetuneConfig } from '../train/config';
import { requireResumable } from '../store/records';
import { KindedError } from '../errors';
import { totalSteps } from '../train/trainer';
import { BatchPlan } from '../train/batching';
import { runInChild } from './child-jobs';
import { openInferenceModel } from '../folder/inference';
import { generate } from '../generate/generate';
import { encodeChatText, loadChatTemplate } from '../chat/template';
import { DEFAULT_CHAT_SAMPLING } from '../protocol/protocol';

function templateOf(dir: string) {
  const tok = loadTokenizer(dir);
  return { tok, template: loadChatTemplate(dir, tok.idToPiece(tok.bosId), tok.idToPiece(tok.eosId)) };
}

export function inspectDataset(modelDir: string, file: string, maxSeqLen: number, lossOn: FinetuneConfig['lossOn']): DatasetInspection {
  const parsed = parseDataset(path.resolve(file));
  const base = {
    file: parsed.file,
    sha256: parsed.sha256,
    format: parsed.format,
    rows: parsed.rows.length,
    issues: parsed.issues.slice(0, 50),
    issueCount: parsed.issues.length,
  };
  if (parsed.issues.length || !parsed.rows.length) return { ...base, summary: null, preview: [] };
  const { tok, template } = templateOf(modelDir);
  const { summary } = tokenizeRows(parsed.rows, tok, { template, lossOn, maxSeqLen });
  const preview = parsed.rows.slice(0, 5).map((row) => ({
    line: row.line,
    segments: rowSegments(row, tok, template).map((s) => ({
      text: 'text' in s ? s.text : tok.idToPiece(s.token),
      learn: lossOn === 'all' || s.learn,
    })),
  }));
  return { ...base, summary, preview };
}

/** The engine's run configuration for a wizard request: the same, with the model's folder. */
function finetuneConfig(svc: EngineService, r: FinetuneRequest): FinetuneConfig {
  const { modelId, ...config } = r;
  return { ...config, model: svc.store.models.get(modelId).path };
}

export function estimateFinetune(svc: EngineService, r: FinetuneRequest): FinetuneEstimate {
  try {
    const cfg = finetuneConfig(svc, r);
    const data = prepareData(cfg);
    const est = estimateRun(cfg, data);
    const m = est.memory;
    const steps = totalSteps(cfg.train, new BatchPlan(data.train.length, cfg.train.batchSize, cfg.train.gradAccum, cfg.train.seed));
    return {
      ok: true,
      reason: null,
      memoryBytes: { weights: m.weights, gradients: m.gradients, optimizer: m.optimizer, activations: m.activations, total: m.total },
      limitBytes: est.limit,
      limitReason: est.limitReason,
      stepSeconds: est.stepSeconds,
      totalSteps: steps,
      trainableParams: m.trainableParams,
    };
  } catch (e) {
    return {
      ok: false,
      reason: (e as Error).message.split('\n')[0],
      memoryBytes: null,
      limitBytes: null,
      limitReason: null,
      stepSeconds: null,
      totalSteps: null,
      trainableParams: null,
    };
  }
}

export function startFinetuneJob(svc: EngineService, r: FinetuneRequest): { jobId: string } {
  const config = finetuneConfig(svc, r);
  const name = svc.store.models.get(r.modelId).name;
  const jobId = svc.jobs.start('finetune', `fine-tuning ${name}`, (ctx) => runInChild('finetune', config, svc.childOptions(), ctx), 'train');
  return { jobId };
}

export function resumeFinetuneJob(svc: EngineService, runId: number): { jobId: string } {
  const run = svc.store.runs.get(runId);
  requireResumable(run);
  const pending = svc.jobs.forRun(runId);
  if (pending)
    throw new KindedError('conflict', `run ${runId} is already being resumed (${pending.waitingFor ? `waiting for ${pending.waitingFor}` : 'running'})`);
  const jobId = svc.jobs.start(
    'finetune',
    `fine-tuning ${run.name ?? `run ${runId}`} (resumed)`,
    (ctx) => runInChild('finetune-resume', { runId }, svc.childOptions(), ctx),
    'train',
    runId,
  );
  return { jobId };
}

/** Greedy answers of both models to each prompt, through the same chat template. */
export function compareJob(svc: EngineService, p: ValidParams<'finetune.compare'>): { jobId: string } {
  const baseDir = svc.store.models.get(p.baseModelId).path;
  const jobId = svc.jobs.start('compare', 'comparing base and fine-tuned answers', async (ctx) => {
    const rows: CompareRow[] = p.prompts.map((prompt) => ({ prompt, base: '', tuned: '' }));
    for (const [which, dir] of [
      ['base', baseDir],
      ['tuned', p.tunedPath],
    ] as const) {
      const loaded = await openInferenceModel(dir);
      try {
        for (const [i, row] of rows.entries()) {
          ctx.progress({ phase: `${which} model`, done: (which === 'base' ? 0 : rows.length) + i, total: 2 * rows.length, unit: 'answers' });
          const ids = encodeChatText(loaded.tokenizer, loaded.template.render([{ role: 'user', content: row.prompt }], true));
          const out = await generate(loaded.runtime, ids, {
            ...DEFAULT_CHAT_SAMPLING,
            seed: 0,
            temperature: 0,
            maxNewTokens: p.maxNewTokens,
            signal: ctx.signal,
          });
          const answer = loaded.tokenizer
            .decode(out.ids)
            .split(/### (User|Assistant|System):/)[0]
            .trim();
          row[which] = answer;
        }
      } finally {
        await loaded.runtime.dispose();
      }
    }
    return { rows };
  });
  return { jobId };
}
