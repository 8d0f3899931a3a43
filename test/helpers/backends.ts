// Numeric tests run on every TensorFlow.js backend that loads here (as tfjs's
// own suites do), so a kernel gap on one backend cannot hide.
import { createRequire } from 'node:module';
import type { BackendName } from '../../engine/backend/select';

const require = createRequire(import.meta.url);

function tfjsNodeInstalled(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

export const TEST_BACKENDS: BackendName[] = [...(tfjsNodeInstalled() ? (['tensorflow'] as const) : []), 'wasm', 'cpu'];
