// A model folder opened for inference, on the fastest runtime that starts
// (runtime/select.ts: ONNX Runtime, else TensorFlow.js), with its tokenizer
// and chat template for generation.
import { initBackend } from '../backend/select';
import { loadChatTemplate, type ChatTemplate } from '../chat/template';
import { exportGraph, exportMobileLLM, type ExportedGraph } from '../onnx/mobilellm';
import { loadOrt } from '../onnx/ort';
import { checkpointParams } from '../onnx/params';
import type { OnnxSessionOptions } from '../onnx/session';
import { OnnxRuntime } from '../runtime/onnx';
import type { InferenceRuntime } from '../runtime/runtime';
import { startRuntime, type RuntimeChoice, type RuntimeOptions } from '../runtime/select';
import { TfjsRuntime } from '../runtime/tfjs';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { readModelFolder, type ModelFolder } from './kind';
import { loadModelFolder } from './load';

/**
 * Opens a folder on ONNX Runtime with as few copies of the weights alive as
 * it can. Float weights and quantized codes go from the file straight into
 * the serialized graph, tensor by tensor. A merged adapter is built on
 * TensorFlow.js's plain-JS cpu backend, whose memory goes back to the
 * allocator (the wasm backend's heap never shrinks), and disposed as soon as
 * the graph is serialized, before ONNX Runtime makes its copy.
 */
export async function openOnnxRuntime(folder: ModelFolder, opts: OnnxSessionOptions = {}): Promise<OnnxRuntime> {
  await loadOrt(); // fail before loading anything if ONNX Runtime is missing
  let graph: ExportedGraph;
  if (folder.kind !== 'adapter') {
    const params = checkpointParams(folder.dir, folder.quantization);
    try {
      graph = exportGraph(params, opts);
    } finally {
      params.close();
    }
  } else {
    const backend = await initBackend();
    await initBackend('cpu');
    try {
      const { model } = loadModelFolder(folder);
      try {
        graph = exportMobileLLM(model, opts);
      } finally {
        model.dispose();
      }
    } finally {
      await initBackend(backend.name);
    }
  }
  return OnnxRuntime.fromGraph(graph, opts);
}

/** Opens a folder on ONNX Runtime (openOnnxRuntime); should that fail, on TensorFlow.js with the current backend. */
export function openRuntime(folder: ModelFolder, opts: RuntimeOptions = {}): Promise<RuntimeChoice> {
  return startRuntime({ onnx: () => openOnnxRuntime(folder, opts.onnx), tfjs: () => new TfjsRuntime(loadModelFolder(folder).model) }, opts);
}

export interface InferenceModel {
  runtime: InferenceRuntime;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** Why faster runtimes were skipped, one line each. */
  skipped: string[];
}

/** Opens the model folder at `dir` for generation: runtime, tokenizer and chat template. */
export async function openInferenceModel(dir: string, opts: RuntimeOptions = {}): Promise<InferenceModel> {
  const folder = readModelFolder(dir);
  const tokenizer = loadTokenizer(folder.tokenizerDir);
  const template = loadChatTemplate(folder.tokenizerDir, tokenizer.idToPiece(tokenizer.bosId), tokenizer.idToPiece(tokenizer.eosId));
  const { runtime, skipped } = await openRuntime(folder, opts);
  return { runtime, tokenizer, template, skipped };
}
