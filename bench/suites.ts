import type { Emit } from './harness';
import { suite as model } from './model.bench';
import { suite as web } from './web.bench';
import { suite as store } from './store.bench';
import { suite as quant } from './quant.bench';
import { suite as onnx } from './onnx.bench';
import { suite as inspect } from './inspect.bench';
import { suite as train } from './train.bench';
import { suite as tokenizer } from './tokenizer.bench';

export interface Suite {
  name: string;
  run: (emit: Emit) => Promise<void>;
}

export const suites: Suite[] = [model, web, store, quant, onnx, inspect, train, tokenizer];
