// Picks the inference runtime: ONNX Runtime when onnxruntime-node loads here,
// else TensorFlow.js. Forced with --runtime / MLW_RUNTIME; a forced runtime
// that fails is an error, not a silent fallback. Always says what it chose.
import type { OnnxSessionOptions } from '../onnx/session';
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

const firstLine = (err: unknown) => (err instanceof Error ? err.message.split('\n')[0] : String(err));

function forcedRuntime(opts: RuntimeOptions): RuntimeName | undefined {
  return opts.runtime ?? (process.env.MLW_RUNTIME ? parseRuntimeName(process.env.MLW_RUNTIME, 'MLW_RUNTIME') : undefined);
}

/**
 * Starts the fastest runtime that starts: `start.onnx`, else `start.tfjs`
 * (a forced runtime only, and its failure is an error).
 */
export async function startRuntime(
  start: { onnx: () => Promise<InferenceRuntime>; tfjs: () => InferenceRuntime },
  opts: RuntimeOptions = {},
): Promise<RuntimeChoice> {
  const forced = forcedRuntime(opts);
  const skipped: string[] = [];
  if (forced !== 'tfjs') {
    try {
      return { runtime: await start.onnx(), skipped };
    } catch (err) {
      if (forced === 'onnx') throw new Error(`runtime "onnx" could not start: ${firstLine(err)}`, { cause: err });
      skipped.push(`onnx: ${firstLine(err)}`);
    }
  }
  return { runtime: start.tfjs(), skipped };
}
