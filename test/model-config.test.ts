// Configs, presets, parameter counts and sharing schedules.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromHf, configToHf, countParams, effectiveDepth, HIDDEN_ACTS } from '../engine/model/config';
import { preset, PRESET_NAMES } from '../engine/model/presets';
import { SHARED_STRATEGIES, sharingSchedule, usesPerBlock } from '../engine/model/sharing';
import { GOLDEN } from './helpers/golden';

const counts = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'param-counts.json'), 'utf8')).configs as Record<
  string,
  {
    total_params: number;
    embedding_params: number;
    non_embedding_params: number;
    params_per_block: number;
    total_params_if_untied_lm_head: number;
    layer_sharing: { total_params: number; effective_depth: number };
  }
>;

describe('presets', () => {
  it.each(Object.keys(counts))('%s has the official parameter counts', (name) => {
    const ref = counts[name];
    const c = countParams(preset(name));
    expect(c.total).toBe(ref.total_params);
    expect(c.embedding).toBe(ref.embedding_params);
    expect(c.nonEmbedding).toBe(ref.non_embedding_params);
    expect(c.perBlock).toBe(ref.params_per_block);
    expect(countParams({ ...preset(name), shareEmbedding: false }).total).toBe(ref.total_params_if_untied_lm_head);
  });

  it.each(Object.keys(counts))('%s-LS stores the same weights at twice the depth', (name) => {
    const ls = preset(`${name}-LS`);
    expect(countParams(ls).total).toBe(counts[name].layer_sharing.total_params);
    expect(effectiveDepth(ls)).toBe(counts[name].layer_sharing.effective_depth);
  });

  it('matches the model card shapes and refuses unknown names', () => {
    expect(preset('600M')).toMatchObject({ numBlocks: 40, numHeads: 18, numKvHeads: 6, hiddenSize: 1152 });
    expect(preset('1B')).toMatchObject({ numBlocks: 54, numHeads: 20, numKvHeads: 5, hiddenSize: 1280 });
    expect(preset('1.5B')).toMatchObject({ numBlocks: 54, numHeads: 25, numKvHeads: 5, hiddenSize: 1600 });
    expect(PRESET_NAMES).toContain('125M-LS');
    expect(() => preset('7B')).toThrow(/unknown preset "7B"/);
  });
});

describe('config.json dialects', () => {
  it('reads the official Meta configs (plain llama, untied unless told)', () => {
    const dir = path.resolve(import.meta.dirname, '../../shared/reference/mobilellm-configs/125M/config.json');
    const raw = fs.existsSync(dir)
      ? JSON.parse(fs.readFileSync(dir, 'utf8'))
      : {
          model_type: 'llama',
          vocab_size: 32000,
          hidden_size: 576,
          intermediate_size: 1536,
          num_hidden_layers: 30,
          num_attention_heads: 9,
          num_key_value_heads: 3,
          tie_word_embeddings: false,
        };
    const c = configFromHf(raw);
    expect(c).toMatchObject({ hiddenSize: 576, numBlocks: 30, numKvHeads: 3, headDim: 64, shareEmbedding: false });
    expect(configFromHf({ ...raw, share_embedding: true }).shareEmbedding).toBe(true);
  });

  it('share_embedding wins over tie_word_embeddings; layer_sharing defaults to immediate ×2', () => {
    const base = { vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 3, num_attention_heads: 2 };
    expect(configFromHf({ ...base, share_embedding: true, tie_word_embeddings: false }).shareEmbedding).toBe(true);
    expect(configFromHf({ ...base, tie_word_embeddings: true }).shareEmbedding).toBe(true);
    expect(configFromHf({ ...base, layer_sharing: true }).sharing).toEqual({ strategy: 'immediate', repeats: 2 });
    const c = configFromHf({ ...base, layer_sharing: true, layer_sharing_strategy: 'reverse', layer_sharing_repeats: 3 });
    expect(configFromHf(configToHf(c))).toEqual(c);
  });

  it.each(HIDDEN_ACTS)('hidden_act %s round-trips through config.json (plain LLaMA and layer-shared)', (act) => {
    const base = { vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 3, num_attention_heads: 2 };
    for (const extra of [{}, { layer_sharing: true }]) {
      const c = configFromHf({ ...base, ...extra, hidden_act: act });
      expect(c.hiddenAct).toBe(act);
      expect(configToHf(c).hidden_act).toBe(act);
      expect(configFromHf(configToHf(c))).toEqual(c);
    }
    expect(configFromHf(base).hiddenAct, 'absent: silu, as transformers defaults').toBe('silu');
  });

  it('reads what transformers 5 writes: rope_parameters.rope_theta, dtype', () => {
    const base = { vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 3, num_attention_heads: 2 };
    const c = configFromHf({ ...base, rope_parameters: { rope_theta: 500000, rope_type: 'default' }, dtype: 'bfloat16' });
    expect(c).toMatchObject({ ropeTheta: 500000, torchDtype: 'bfloat16' });
    expect(configFromHf({ ...base, rope_theta: 20000, rope_parameters: null }).ropeTheta).toBe(20000);
    expect(configFromHf(base).ropeTheta).toBe(10000);
  });

  it.each([
    [{ hidden_act: 'gelu_new' }, /unsupported hidden_act "gelu_new" \(expected one of silu, relu, gelu, gelu_pytorch_tanh\)/],
    [{ attention_bias: true }, /attention_bias=true is not supported/],
    [{ rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling .* is not supported/],
    [{ rope_parameters: { rope_theta: 10000, rope_type: 'yarn', factor: 4 } }, /rope_parameters .* is not supported \(only rope_type "default"\)/],
    [{ hidden_size: 9 }, /hidden_size \(9\) is not divisible by num_attention_heads \(2\)/],
    [{ vocab_size: -1 }, /invalid "vocab_size"/],
    [{ model_type: 'gpt2' }, /unsupported model_type "gpt2"/],
    [{ layer_sharing: true, layer_sharing_strategy: 'sideways' }, /invalid "layer_sharing_strategy"/],
    // Sizes are bounded (engine/model/limits.ts) before anything is sized by them.
    [{ num_hidden_layers: 1e9 }, /x\/config\.json: invalid "num_hidden_layers": at most 1024/],
    [{ layer_sharing: true, layer_sharing_repeats: 1e9 }, /x\/config\.json: invalid "layer_sharing_repeats": at most 16/],
    [
      { num_hidden_layers: 1024, layer_sharing: true, layer_sharing_repeats: 16 },
      /x\/config\.json: num_hidden_layers × layer_sharing_repeats \(1024 × 16 = 16384 layers\) is over the limit of 4096/,
    ],
    [{ vocab_size: 2 ** 21 }, /invalid "vocab_size": at most 1048576/],
    [{ hidden_size: 2 ** 17 }, /invalid "hidden_size": at most 65536/],
    [{ intermediate_size: 1e12 }, /invalid "intermediate_size": at most 262144/],
    [{ num_attention_heads: 4096 }, /invalid "num_attention_heads": at most 1024/],
    [{ num_key_value_heads: 4096 }, /invalid "num_key_value_heads": at most 1024/],
    [{ head_dim: 4096 }, /invalid "head_dim": at most 1024/],
    [{ max_position_embeddings: 1e12 }, /invalid "max_position_embeddings": at most 1048576/],
    [{ bos_token_id: 1e9 }, /x\/config\.json: bos_token_id \(1000000000\) is not below vocab_size \(10\)/],
    [{ bos_token_id: -1 }, /invalid "bos_token_id"/],
    [{ eos_token_id: 10 }, /eos_token_id \(10\) is not below vocab_size \(10\)/],
    [{ eos_token_id: [2, 1e9] }, /eos_token_id \(1000000000\) is not below vocab_size \(10\)/],
  ])('refuses %j', (patch, error) => {
    const base = { vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 3, num_attention_heads: 2 };
    expect(() => configFromHf({ ...base, ...patch }, 'x/config.json')).toThrow(error);
  });
});

describe('sharing schedules', () => {
  it('gives the three strategies of the paper and the golden orders', () => {
    expect(sharingSchedule(3, { strategy: 'immediate', repeats: 2 })).toEqual([0, 0, 1, 1, 2, 2]);
    expect(sharingSchedule(3, { strategy: 'repeat_all', repeats: 2 })).toEqual([0, 1, 2, 0, 1, 2]);
    expect(sharingSchedule(3, { strategy: 'reverse', repeats: 2 })).toEqual([0, 1, 2, 2, 1, 0]);
    expect(sharingSchedule(3, { strategy: 'none', repeats: 1 })).toEqual([0, 1, 2]);
  });

  it('handles other repeat counts and uses every block `repeats` times', () => {
    expect(sharingSchedule(2, { strategy: 'immediate', repeats: 3 })).toEqual([0, 0, 0, 1, 1, 1]);
    expect(sharingSchedule(2, { strategy: 'reverse', repeats: 3 })).toEqual([0, 1, 1, 0, 0, 1]);
    expect(SHARED_STRATEGIES).toEqual(['immediate', 'repeat_all', 'reverse']);
    for (const strategy of SHARED_STRATEGIES) {
      for (const repeats of [1, 2, 4]) {
        const s = sharingSchedule(5, { strategy, repeats });
        expect(s.length).toBe(5 * repeats);
        expect(usesPerBlock(s, 5).every((u) => u.length === repeats)).toBe(true);
      }
    }
    expect(() => sharingSchedule(3, { strategy: 'immediate', repeats: 0 })).toThrow(/positive integer/);
    // However the sharing was built (a flag, a request), the schedule is never sized past the limits.
    expect(() => sharingSchedule(30, { strategy: 'immediate', repeats: 1e9 })).toThrow(/layer_sharing_repeats must be at most 16, got 1000000000/);
    expect(() => sharingSchedule(1e9, { strategy: 'none', repeats: 1 })).toThrow(/a schedule of 1000000000 layers is over the limit of 4096/);
    expect(() => sharingSchedule(1000, { strategy: 'reverse', repeats: 16 })).toThrow(/a schedule of 16000 layers is over the limit of 4096/);
  });
});
