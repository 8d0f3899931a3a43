// The zero-shot accuracy of a lab variant's trained model: lm-evaluation-harness
// acc on a multiple-choice tasks file (engine/eval), by default the bundled
// set made from the held-out text (resources/eval/held-out-choice.jsonl, 200
// items). Measured once per trained run and kept in zero-shot.json beside
// evaluations.json, keyed like it ("<variant>-seed<N>") and tied to the run id
// and the tasks file's sha256, so that a retrained variant or another set is
// measured again.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { z } from 'zod';
import { HELD_OUT_CHOICE_PATH } from '../eval/held-out-choice';
import { evaluateModel } from '../eval/job';
import type { JobContext } from '../jobs/job';
import type { RuntimeName } from '../runtime/runtime';

export const ZERO_SHOT_FILE = 'zero-shot.json';

const Stderr = z.number().min(0).nullable();

export const MeasuredZeroShot = z.object({
  runId: z.number().int().positive(),
  tasksSha256: z.string(),
  items: z.number().int().positive(),
  acc: z.number().min(0).max(1),
  /** Over the items, sqrt(sample variance / n) (the harness's stderr). */
  accStderr: Stderr,
  accNorm: z.number().min(0).max(1),
  accNormStderr: Stderr,
  /** acc of each task in the file. */
  tasks: z.record(z.string(), z.number().min(0).max(1)),
});
export type MeasuredZeroShot = z.infer<typeof MeasuredZeroShot>;

/** The tasks file a lab run scores (default: the bundled set) and its sha256, checked before anything trains. */
export function zeroShotTasks(file = HELD_OUT_CHOICE_PATH): { file: string; sha256: string } {
  if (!fs.existsSync(file)) throw new Error(`lab: the zero-shot tasks file ${file} is missing`);
  return { file, sha256: crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') };
}

/** Zero-shot accuracy of the model folder at `modelDir` on `tasksFile`. */
export async function modelZeroShot(
  modelDir: string,
  runId: number,
  tasksFile: string,
  runtime: RuntimeName | undefined,
  ctx: JobContext,
): Promise<MeasuredZeroShot> {
  const r = await evaluateModel({ modelDir, tasks: tasksFile, runtime }, ctx);
  if (r.type !== 'multiple_choice') throw new Error('evaluation: expected a multiple-choice report');
  const { items, acc, accStderr, accNorm, accNormStderr } = r.overall;
  return {
    runId,
    tasksSha256: r.tasksFile.sha256,
    items,
    acc,
    accStderr,
    accNorm,
    accNormStderr,
    tasks: Object.fromEntries(r.tasks.map((t) => [t.task, t.acc])),
  };
}
