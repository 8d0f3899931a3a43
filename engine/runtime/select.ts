// Picks the inference runtime: ONNX Runtime when onnxruntime-node loads here,
// else TensorFlow.js. Forced with --runtime / MLW_RUNTIME; a forced runtime
// that fails is an error, not a silent fallback. Always says what it chose.
import { initBackend } from '../backend/select';
import { loadModel } from '../io/checkpoint';
import type { MobileLLM } from '../model/model';
import { loadOrt } from '../onnx/ort';
import type { OnnxSessionOptions } from '../onnx/session';
import { OnnxRuntime } from './onnx';
import { TfjsRuntime } from './tfjs';
import { RUNTIME_NAMES, type InferenceRuntime, type RuntimeName } from './runtime';

export function parseRuntimeName(value: string, source: string): RuntimeName {
  if ((RUNTIME_NAMES as readonly string[]).includes(value)) return value as RuntimeName;
  throw new Error(`${source}: unknown runtime "${value}" (expected one of ${RUNTIME_NAMES.join(', ')})`);
}

export interface RuntimeOptions {
  /** Forced runtime (default: MLW_RUNTIME, else the fastest that starts). */
  runtime?: RuntimeName;
  onnx?: OnnxSessionOptions;
}

export interface RuntimeChoice {
  runtime: InferenceRuntime;
  /** Why faster runtimes were skipped, one line each. */
  skipped: string[];
}

/**
 * Starts a runtime for `model` and hands the model to it: the tfjs runtime
 * disposes it with itself; the onnx runtime disposes it as soon as ONNX
 * Runtime holds the weights (so one copy stays in memory).
 */
function forcedRuntime(opts: RuntimeOptions): RuntimeName | undefined {
  return opts.runtime ?? (process.env.MLW_RUNTIME ? parseRuntimeName(process.env.MLW_RUNTIME, 'MLW_RUNTIME') : undefined);
}

export async function createRuntime(model: MobileLLM, opts: RuntimeOptions = {}): Promise<RuntimeChoice> {
  const forced = forcedRuntime(opts);
  const skipped: string[] = [];
  if (forced !== 'tfjs') {
    try {
      const runtime = await OnnxRuntime.create(model, opts.onnx);
      model.dispose();
      return { runtime, skipped };
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      if (forced === 'onnx') throw new Error(`runtime "onnx" could not start: ${why}`);
      skipped.push(`onnx: ${why}`);
    }
  }
  return { runtime: new TfjsRuntime(model), skipped };
}

/**
 * Loads a model folder (float or quantized) into a runtime. When it will be
 * onnx, the weights are staged on TensorFlow.js's plain-JS cpu backend, whose
 * memory is returned once ONNX Runtime holds its copy (the wasm backend's heap
 * never shrinks: a float model staged there would stay resident twice).
 */
export async function openRuntime(dir: string, opts: RuntimeOptions = {}): Promise<RuntimeChoice> {
  const staged = forcedRuntime(opts) !== 'tfjs' && (await loadOrt().then(() => true, () => false));
  const backend = await initBackend();
  if (staged) await initBackend('cpu');
  try {
    return await createRuntime(loadModel(dir).model, opts);
  } finally {
    // A tfjs fallback's tensors move to this backend on first use.
    if (staged) await initBackend(backend.name);
  }
}
