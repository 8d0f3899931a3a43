// One fine-tuning configuration (engine/train/config.ts): the wizard's
// presets, the protocol's requests and mlw finetune's flags derive from it,
// with the same defaults and the same bounds.
import { describe, expect, it } from 'vitest';
import { FinetuneConfig } from '../engine/train/config';
import { FINETUNE_PRESET_NAMES, FINETUNE_PRESETS, presetRequest, requests } from '../engine/protocol/protocol';
import { mlwProcess } from './helpers/mlw-process';

const { model: _model, ...DEFAULTS } = FinetuneConfig.parse({ model: 'm', data: 'd.jsonl' });

describe('the fine-tuning configuration', () => {
  it('is where the wizard starts: a preset changes only what it names', () => {
    for (const name of FINETUNE_PRESET_NAMES) {
      const preset = FINETUNE_PRESETS[name];
      expect(presetRequest(name, 7, 'd.jsonl'), name).toEqual({
        ...DEFAULTS,
        modelId: 7,
        method: preset.method,
        maxSeqLen: preset.maxSeqLen,
        lora: { ...DEFAULTS.lora, ...preset.lora },
        train: { ...DEFAULTS.train, ...preset.train },
      });
    }
  });

  it('bounds the protocol where it bounds a run', () => {
    const cases = [
      [{ lora: { dropout: 0.9 } }, true],
      [{ lora: { dropout: 0.91 } }, false],
      [{ lora: { rank: 256 } }, true],
      [{ lora: { rank: 257 } }, false],
      [{ maxSeqLen: 16 }, true],
      [{ maxSeqLen: 15 }, false],
      [{ maxSeqLen: 8193 }, false],
      [{ valFraction: 0.6 }, false],
      [{ train: { epochs: 101 } }, false],
      [{ train: { batchSize: 256, gradAccum: 256 } }, true],
      [{ train: { lr: 0 } }, false],
    ] as const;
    for (const [settings, ok] of cases) {
      expect(FinetuneConfig.safeParse({ model: 'm', data: 'd.jsonl', ...settings }).success, JSON.stringify(settings)).toBe(ok);
      expect(requests['finetune.start'].params.safeParse({ modelId: 1, data: 'd.jsonl', ...settings }).success, JSON.stringify(settings)).toBe(ok);
    }
  });

  it("is what mlw finetune --help states as each flag's default", async () => {
    // One entry per option: its line and the lines its description wraps onto.
    const options = (await mlwProcess(['finetune', '--help'])).stdout.split(/\n(?= {2}-)/).map((o) => o.replace(/\s+/g, ' ').trim());
    const expected: [string, unknown][] = [
      ['--val-fraction', DEFAULTS.valFraction],
      ['--method', DEFAULTS.method],
      ['--epochs', DEFAULTS.train.epochs],
      ['--lr', DEFAULTS.train.lr],
      ['--warmup-steps', DEFAULTS.train.warmupSteps],
      ['--schedule', DEFAULTS.train.decay],
      ['--batch-size', DEFAULTS.train.batchSize],
      ['--grad-accum', DEFAULTS.train.gradAccum],
      ['--max-seq-len', DEFAULTS.maxSeqLen],
      ['--weight-decay', DEFAULTS.train.adamw.weightDecay],
      ['--max-grad-norm', DEFAULTS.train.maxGradNorm],
      ['--lora-rank', DEFAULTS.lora.rank],
      ['--lora-alpha', DEFAULTS.lora.alpha],
      ['--lora-dropout', DEFAULTS.lora.dropout],
      ['--lora-targets', DEFAULTS.lora.targets.join(',')],
      ['--loss-on', DEFAULTS.lossOn],
      ['--seed', DEFAULTS.train.seed],
      ['--eval-every', DEFAULTS.train.evalEvery],
      ['--save-every', DEFAULTS.train.saveEvery],
      ['--save-every-minutes', DEFAULTS.train.saveEveryMinutes],
      ['--keep-last', DEFAULTS.train.keepLast],
    ];
    for (const [flag, value] of expected) {
      expect(options.find((o) => o.startsWith(`${flag} <`)) ?? `${flag}: not in the help`).toContain(`(default ${value}`);
    }
  });

  it("holds mlw finetune's flags to its bounds", async () => {
    const flags = ['finetune', 'no-such-model', '--data', 'no-such-data.jsonl', '--check'];
    const [over, under, at] = await Promise.all([
      mlwProcess([...flags, '--lora-dropout', '0.95']),
      mlwProcess([...flags, '--max-seq-len', '15']),
      mlwProcess([...flags, '--lora-dropout', '0.9', '--max-seq-len', '16']),
    ]);
    expect(over).toMatchObject({ code: 2, stderr: 'mlw: --lora-dropout: 0.95 is above the maximum 0.9\n' });
    expect(under).toMatchObject({ code: 2, stderr: 'mlw: --max-seq-len: 15 is below the minimum 16\n' });
    // Within the bounds the flags pass; what stops it is the missing data.
    expect(at).toMatchObject({ code: 1, stderr: expect.stringMatching(/no-such-data\.jsonl: dataset file not found/) });
  });
});
