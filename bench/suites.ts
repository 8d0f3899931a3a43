import type { Emit } from './harness';

export interface Suite {
  name: string;
  run: (emit: Emit) => Promise<void>;
}

export const suites: Suite[] = [];
