// The inference runtimes over a MobileLLM the test holds in memory (loaded,
// quantized, built at random): what the tests compare the runtimes with. The
// engine itself opens model folders (engine/folder/inference.ts), straight
// into the ONNX graph, and never exports a model it already holds.
import type { MobileLLM } from '../../engine/model/model';
import { exportMobileLLM } from '../../engine/onnx/mobilellm';
import { loadOrt } from '../../engine/onnx/ort';
import { OnnxModelSession, type OnnxSessionOptions } from '../../engine/onnx/session';
import { OnnxRuntime } from '../../engine/runtime/onnx';
import { startRuntime, type RuntimeChoice, type RuntimeOptions } from '../../engine/runtime/select';
import { TfjsRuntime } from '../../engine/runtime/tfjs';

/** `model` exported and opened in ONNX Runtime; the tfjs model is not needed (nor disposed) afterwards. */
export async function onnxSession(model: MobileLLM, opts: OnnxSessionOptions = {}): Promise<OnnxModelSession> {
  await loadOrt(); // fail before the export if ONNX Runtime is missing
  return OnnxModelSession.open(exportMobileLLM(model, opts), opts);
}

/** The onnx runtime on `model` (see onnxSession). */
export async function onnxRuntime(model: MobileLLM, opts: OnnxSessionOptions = {}): Promise<OnnxRuntime> {
  await loadOrt();
  return OnnxRuntime.fromGraph(exportMobileLLM(model, opts), opts);
}

/**
 * The runtime engine/runtime/select.ts picks, on `model`, which it hands over:
 * the tfjs runtime disposes it with itself; the onnx runtime disposes it as
 * soon as ONNX Runtime holds the weights.
 */
export function createRuntime(model: MobileLLM, opts: RuntimeOptions = {}): Promise<RuntimeChoice> {
  return startRuntime(
    {
      onnx: async () => {
        const runtime = await onnxRuntime(model, opts.onnx);
        model.dispose();
        return runtime;
      },
      tfjs: () => new TfjsRuntime(model),
    },
    opts,
  );
}
