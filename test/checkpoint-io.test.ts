// Loading and saving Hugging Face model folders, and the one-line error each
// malformed input gets (a table of bad fixtures, as Netron keeps one).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend/select';
import { loadModel, saveModel } from '../engine/io/checkpoint';
import { SafetensorsFile, safetensorsHeader, writeSafetensors, MAX_HEADER_BYTES } from '../engine/io/safetensors';
import { readSafetensors } from '../engine/io/safetensors';
import { f32ToF16Bits, float32Raw, toFloat32 } from '../engine/io/raw-tensor';
import { quietContext } from '../engine/jobs/job';
import { checkpointParams, type FloatParam } from '../engine/onnx/params';
import { loadQuantizedModel, saveQuantizedModel } from '../engine/quant/checkpoint';
import { quantizeModel } from '../engine/quant/quantize';
import { resolveSpec } from '../engine/quant/spec';
import { LoraSettings } from '../engine/train/config';
import { configFromHf } from '../engine/model/config';
import { ADAPTER_WEIGHTS, applyLora, readAdapterWeights, writeAdapterFiles } from '../engine/train/lora';
import { goldenDir, goldenTensors, maxAbsDiff } from './helpers/golden';

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-ckpt-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of a golden folder whose files we may damage. */
function copyCase(name: string, as: string): string {
  const dir = path.join(tmp, as);
  fs.cpSync(goldenDir(name as never), dir, { recursive: true });
  return dir;
}

function logitsOf(dir: string): Float32Array {
  const { model } = loadModel(dir);
  const ids = goldenTensors('tiny-gqa').ids();
  const x = tf.tensor2d(ids.values, ids.shape as [number, number], 'int32');
  const logits = model.forward(x);
  const out = logits.dataSync() as Float32Array;
  tf.dispose([x, logits]);
  model.dispose();
  return out;
}

describe('saving', () => {
  it('round-trips float32 exactly, with shared embedding and layer sharing', async () => {
    for (const name of ['tiny-gqa', 'tiny-ls-reverse', 'tiny-untied-mha']) {
      const { model } = loadModel(goldenDir(name as never));
      const out = path.join(tmp, `saved-${name}`);
      await saveModel(model, out);
      const again = readSafetensors(path.join(out, 'model.safetensors')).tensors;
      const orig = readSafetensors(path.join(goldenDir(name as never), 'model.safetensors')).tensors;
      // Shared tensors are stored once: same names as the original, no lm_head when shared.
      expect([...again.keys()].sort()).toEqual([...orig.keys()].sort());
      for (const [k, t] of orig) expect(Buffer.compare(Buffer.from(again.get(k)!.data), Buffer.from(t.data)), k).toBe(0);
      const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
      expect(cfg.tie_word_embeddings).toBe(model.config.shareEmbedding);
      // Unshared: plain LLaMA; shared: our model type, with the modeling file its auto_map names beside it.
      const shared = model.config.sharing.strategy !== 'none';
      expect(cfg.model_type).toBe(shared ? 'mobilellm' : 'llama');
      expect(cfg.layer_sharing ?? false).toBe(shared);
      expect(fs.existsSync(path.join(out, 'modeling_mobilellm.py'))).toBe(shared);
      expect(configFromHf(cfg)).toEqual({ ...model.config, torchDtype: 'float32' });
      model.dispose();
    }
  });

  it('saves float16 that loads back to the same logits as the float16 golden', async () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const out = path.join(tmp, 'saved-fp16');
    await saveModel(model, out, { dtype: 'float16' });
    model.dispose();
    const st = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    expect(st.info('model.norm.weight').dtype).toBe('F16');
    st.close();
    // Our float32→float16 rounding must equal torch's: same bytes as the golden fp16 file.
    const ours = readSafetensors(path.join(out, 'model.safetensors')).tensors;
    const theirs = readSafetensors(path.join(goldenDir('tiny-gqa-fp16'), 'model.safetensors')).tensors;
    for (const [k, t] of theirs) expect(Buffer.compare(Buffer.from(ours.get(k)!.data), Buffer.from(t.data)), k).toBe(0);
    expect(maxAbsDiff(logitsOf(out), goldenTensors('tiny-gqa-fp16').get('logits').values)).toBeLessThan(1e-4);
  });

  it('replaces an existing folder only once the new one is complete', async () => {
    const { model } = loadModel(goldenDir('tiny-gqa'));
    const out = path.join(tmp, 'replace');
    await saveModel(model, out);
    const before = fs.readFileSync(path.join(out, 'model.safetensors'));
    // A save that fails midway (an extra file in a folder that does not exist) leaves the old folder intact.
    await expect(saveModel(model, out, { extraFiles: { 'sub/dir/x.txt': 'x' } })).rejects.toThrow();
    expect(Buffer.compare(fs.readFileSync(path.join(out, 'model.safetensors')), before)).toBe(0);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
    model.dispose();
  });
});

describe('sharded checkpoints', () => {
  it('loads model.safetensors.index.json shards', () => {
    const dir = path.join(tmp, 'sharded');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(goldenDir('tiny-gqa'), 'config.json'), path.join(dir, 'config.json'));
    const { tensors } = readSafetensors(path.join(goldenDir('tiny-gqa'), 'model.safetensors'));
    const names = [...tensors.keys()];
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    [names.slice(0, half), names.slice(half)].forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(
        path.join(dir, file),
        part.map((n) => [n, tensors.get(n)!]),
      );
      for (const n of part) weightMap[n] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    expect(maxAbsDiff(logitsOf(dir), goldenTensors('tiny-gqa').get('logits').values)).toBeLessThan(1e-4);
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(() => loadModel(dir)).toThrow(/shard model-00002-of-00002\.safetensors .* is missing/);
  });
});

/** Writes a safetensors file from a raw header object and data bytes. */
function rawSafetensors(file: string, header: unknown, data: Uint8Array, lenOverride?: bigint): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

describe('malformed inputs: one line naming the file and tensor', () => {
  const cases: { name: string; damage: (dir: string) => void; error: RegExp }[] = [
    {
      name: 'missing tensor',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        tensors.delete('model.layers.2.mlp.up_proj.weight');
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /model\.safetensors: missing tensor "model\.layers\.2\.mlp\.up_proj\.weight"/,
    },
    {
      name: 'unexpected tensor',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        tensors.set('model.layers.9.extra.weight', { dtype: 'F32', shape: [1], data: new Uint8Array(4) });
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /unexpected tensor "model\.layers\.9\.extra\.weight"/,
    },
    {
      name: 'wrong shape',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        const t = tensors.get('model.layers.0.self_attn.k_proj.weight')!;
        tensors.set('model.layers.0.self_attn.k_proj.weight', { ...t, shape: [64, 32] });
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /tensor "model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[64,32\], expected \[32,64\]/,
    },
    {
      name: 'truncated file',
      damage: (dir) => {
        const f = path.join(dir, 'model.safetensors');
        fs.truncateSync(f, fs.statSync(f).size - 1000);
      },
      error: /model\.safetensors: tensor ".+": data_offsets .* run past the end of the file/,
    },
    {
      name: 'file shorter than its header',
      damage: (dir) => fs.truncateSync(path.join(dir, 'model.safetensors'), 100),
      error: /model\.safetensors: truncated safetensors file: header needs \d+ bytes/,
    },
    {
      name: 'empty file',
      damage: (dir) => fs.writeFileSync(path.join(dir, 'model.safetensors'), ''),
      error: /model\.safetensors: truncated safetensors file \(0 bytes/,
    },
    {
      name: 'oversized header',
      damage: (dir) => rawSafetensors(path.join(dir, 'model.safetensors'), {}, new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n),
      error: /safetensors header of 100000001 bytes exceeds the 100000000-byte limit/,
    },
    {
      name: 'header not JSON',
      damage: (dir) => {
        const f = path.join(dir, 'model.safetensors');
        const b = fs.readFileSync(f);
        b.write('{{{{', 8);
        fs.writeFileSync(f, b);
      },
      error: /malformed safetensors header \(not JSON/,
    },
    {
      name: 'unknown dtype',
      damage: (dir) =>
        rawSafetensors(
          path.join(dir, 'model.safetensors'),
          { 'model.norm.weight': { dtype: 'F8_E4M3X', shape: [64], data_offsets: [0, 64] } },
          new Uint8Array(64),
        ),
      error: /tensor "model\.norm\.weight": unknown dtype "F8_E4M3X"/,
    },
    {
      name: 'byte length not matching dtype × shape',
      damage: (dir) =>
        rawSafetensors(
          path.join(dir, 'model.safetensors'),
          { 'model.norm.weight': { dtype: 'F32', shape: [64], data_offsets: [0, 128] } },
          new Uint8Array(128),
        ),
      error: /tensor "model\.norm\.weight": holds 128 bytes but F32\[64\] needs 256/,
    },
    {
      name: 'overlapping tensors',
      damage: (dir) =>
        rawSafetensors(
          path.join(dir, 'model.safetensors'),
          { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } },
          new Uint8Array(24),
        ),
      error: /tensor "b" overlaps tensor "a"/,
    },
    {
      name: 'integer weights',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        tensors.set('model.norm.weight', { dtype: 'I32', shape: [64], data: new Uint8Array(256) });
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /tensor "model\.norm\.weight" has dtype I32; expected a float type/,
    },
    {
      name: 'a NaN weight',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        const t = tensors.get('model.layers.1.mlp.down_proj.weight')!;
        const values = Float32Array.from(toFloat32(t));
        values[5] = NaN;
        tensors.set('model.layers.1.mlp.down_proj.weight', float32Raw(values, t.shape));
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /model\.safetensors: tensor "model\.layers\.1\.mlp\.down_proj\.weight" holds NaN \(element 5 of \d+\); a checkpoint's weights must be finite/,
    },
    {
      name: 'an infinite float16 weight',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        const bits = f32ToF16Bits(new Float32Array(64).fill(1));
        bits[63] = 0x7c00;
        tensors.set('model.norm.weight', { dtype: 'F16', shape: [64], data: new Uint8Array(bits.buffer) });
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /tensor "model\.norm\.weight" holds Infinity \(element 63 of 64\)/,
    },
    {
      name: 'a -Inf bfloat16 weight',
      damage: (dir) => {
        const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
        const bits = new Uint16Array(64).fill(0x3f80); // 1.0
        bits[0] = 0xff80;
        tensors.set('model.layers.0.input_layernorm.weight', { dtype: 'BF16', shape: [64], data: new Uint8Array(bits.buffer) });
        writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      },
      error: /tensor "model\.layers\.0\.input_layernorm\.weight" holds -Infinity \(element 0 of 64\)/,
    },
    {
      name: 'no weights',
      damage: (dir) => fs.rmSync(path.join(dir, 'model.safetensors')),
      error: /no weights found \(expected model\.safetensors/,
    },
    {
      name: 'no config.json',
      damage: (dir) => fs.rmSync(path.join(dir, 'config.json')),
      error: /no config\.json \(not a Hugging Face model folder\)/,
    },
    {
      name: 'config.json not JSON',
      damage: (dir) => fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 64,'),
      error: /config\.json: not valid JSON/,
    },
    {
      name: 'config with a bad value',
      damage: (dir) => {
        const f = path.join(dir, 'config.json');
        fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), num_key_value_heads: 3 }));
      },
      error: /config\.json: num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/,
    },
  ];

  it.each(cases)('$name', ({ name, damage, error }) => {
    const dir = copyCase('tiny-gqa', `bad-${name.replace(/\W+/g, '-')}`);
    damage(dir);
    let message = '';
    try {
      loadModel(dir);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(error);
    expect(message).not.toContain('\n');
  });

  it('a NaN weight is refused as well when the ONNX exporter reads the folder from disk', () => {
    const nan = cases.find((c) => c.name === 'a NaN weight')!;
    const dir = copyCase('tiny-gqa', 'bad-nan-onnx');
    nan.damage(dir);
    const params = checkpointParams(dir);
    try {
      const down = params.get('model.layers.1.mlp.down_proj') as FloatParam;
      expect(() => down.values()).toThrow(nan.error);
      expect((params.get('model.layers.0.mlp.down_proj') as FloatParam).values().every(Number.isFinite)).toBe(true);
    } finally {
      params.close();
    }
  });

  it("a NaN in a quantized model's scales or in an adapter's weights is refused too", async () => {
    /** Sets element 0 of a float tensor of `file` to NaN. */
    const poison = (file: string, name: string) => {
      const { tensors } = readSafetensors(file);
      const t = tensors.get(name)!;
      const values = Float32Array.from(toFloat32(t));
      values[0] = NaN;
      tensors.set(name, t.dtype === 'F16' ? { ...t, data: new Uint8Array(f32ToF16Bits(values).buffer) } : float32Raw(values, t.shape));
      writeSafetensors(file, tensors);
    };
    const { model } = loadModel(goldenDir('tiny-gqa'));
    try {
      const quantized = path.join(tmp, 'nan-quantized');
      const q = await quantizeModel(model, resolveSpec(model.config, { method: 'w8' }), quietContext());
      await saveQuantizedModel(q, quantized);
      poison(path.join(quantized, 'model.safetensors'), 'model.layers.2.self_attn.v_proj.scales');
      expect(() => loadQuantizedModel(quantized)).toThrow(
        /model\.safetensors: tensor "model\.layers\.2\.self_attn\.v_proj\.scales" holds NaN \(element 0 of \d+\)/,
      );
      const adapter = path.join(tmp, 'nan-adapter');
      fs.mkdirSync(adapter);
      const lora = applyLora(model, LoraSettings.parse({ rank: 2, targets: ['q'] }), { seed: 1 }, (t) => tf.variable(t));
      writeAdapterFiles(lora, adapter, goldenDir('tiny-gqa'));
      lora.remove();
      const file = path.join(adapter, ADAPTER_WEIGHTS);
      poison(file, [...readSafetensors(file).tensors.keys()][0]);
      expect(() => readAdapterWeights(adapter)).toThrow(/adapter_model\.safetensors: tensor ".+lora_[AB].+" holds NaN \(element 0 of \d+\)/);
    } finally {
      model.dispose();
    }
  });

  it('a header over the cap is refused before it is read', () => {
    const f = path.join(tmp, 'huge-header.safetensors');
    const head = safetensorsHeader([]);
    head.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES) * 10n, 0);
    fs.writeFileSync(f, head);
    expect(() => SafetensorsFile.open(f)).toThrow(/exceeds the 100000000-byte limit/);
  });
});
