// Block-wise layer sharing (MobileLLM-LS): N physical blocks run `repeats`
// times each, giving N × repeats effective layers at the storage cost of N.
//
//   immediate   0,0,1,1,2,2      each block runs twice in a row (what MobileLLM-LS
//                                 uses: the shared weights are still in cache)
//   repeat_all  0,1,2,0,1,2      the whole stack runs again
//   reverse     0,1,2,2,1,0      the stack runs forward, then backward
//
// A shared block stores its weights once; its gradient is the sum over its uses,
// which autodiff gives for free because every use reads the same tensors.
import { CONFIG_LIMITS } from './limits';

export const SHARING_STRATEGIES = ['none', 'immediate', 'repeat_all', 'reverse'] as const;
export type SharingStrategy = (typeof SHARING_STRATEGIES)[number];
/** A strategy that shares layers: any but 'none'. */
export type SharedStrategy = Exclude<SharingStrategy, 'none'>;
export const SHARED_STRATEGIES: readonly SharedStrategy[] = SHARING_STRATEGIES.filter((s): s is SharedStrategy => s !== 'none');

export interface LayerSharing {
  strategy: SharingStrategy;
  /** Times each block runs; 1 when strategy is 'none'. */
  repeats: number;
}

export const NO_SHARING: LayerSharing = { strategy: 'none', repeats: 1 };

/** Effective layer → physical block index. */
export function sharingSchedule(numBlocks: number, sharing: LayerSharing): number[] {
  const { strategy, repeats } = sharing;
  if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
  // The schedule is allocated: bound it however the sharing was asked for (a config, a flag, a request).
  const tooDeep = (layers: number) => {
    if (layers > CONFIG_LIMITS.effectiveDepth) throw new Error(`a schedule of ${layers} layers is over the limit of ${CONFIG_LIMITS.effectiveDepth}`);
  };
  tooDeep(numBlocks);
  if (strategy === 'none') return Array.from({ length: numBlocks }, (_, i) => i);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`layer_sharing_repeats must be a positive integer, got ${repeats}`);
  if (repeats > CONFIG_LIMITS.sharingRepeats) throw new Error(`layer_sharing_repeats must be at most ${CONFIG_LIMITS.sharingRepeats}, got ${repeats}`);
  tooDeep(numBlocks * repeats);
  const ascending = Array.from({ length: numBlocks }, (_, i) => i);
  const out: number[] = [];
  switch (strategy) {
    case 'immediate':
      for (const b of ascending) for (let r = 0; r < repeats; r++) out.push(b);
      break;
    case 'repeat_all':
      for (let r = 0; r < repeats; r++) out.push(...ascending);
      break;
    case 'reverse':
      // Passes alternate direction: up, down, up, …
      for (let r = 0; r < repeats; r++) out.push(...(r % 2 === 0 ? ascending : [...ascending].reverse()));
      break;
  }
  return out;
}

/** Effective layers that run each physical block, for diagrams and gradient bookkeeping. */
export function usesPerBlock(schedule: number[], numBlocks: number): number[][] {
  const uses: number[][] = Array.from({ length: numBlocks }, () => []);
  schedule.forEach((b, layer) => uses[b].push(layer));
  return uses;
}
