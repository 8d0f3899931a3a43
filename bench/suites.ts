import type { Emit } from './harness';
import { suite as model } from './model.bench';

export interface Suite {
  name: string;
  run: (emit: Emit) => Promise<void>;
}

export const suites: Suite[] = [model];
