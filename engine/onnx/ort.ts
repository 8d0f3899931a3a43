// onnxruntime-node, loaded on first use so that the engine starts (on
// TensorFlow.js) where the package or its native library is missing. Only the
// CPU binaries inside the npm package are used: its install script, which
// downloads GPU parts, is kept out of allowScripts.
export type Ort = typeof import('onnxruntime-node');

let loading: Promise<Ort> | null = null;

/** The onnxruntime-node module; rejects (every time) if it cannot load here. */
export function loadOrt(): Promise<Ort> {
  loading ??= import('onnxruntime-node').then(
    (m) => m,
    (err: unknown) => {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new Error(`onnxruntime-node could not load: ${why}`);
    },
  );
  return loading;
}
