// Learning-rate schedules as Hugging Face transformers defines them
// (get_{cosine,linear,constant}_schedule_with_warmup): the rate of optimizer
// step s (0-based, so the first step of a warmup runs at 0) is peak · λ(s),
//
//   warmup     λ(s) = s / W                                   for s < W
//   cosine     λ(s) = m + (1 − m) · ½(1 + cos(π · p))          p = (s − W) / (S − W)
//   linear     λ(s) = max(0, (S − s) / (S − W))
//   constant   λ(s) = 1
//
// with S the total number of optimizer steps and m the floor as a fraction of the peak (cosine only).

export const DECAYS = ['cosine', 'linear', 'constant'] as const;
export type Decay = (typeof DECAYS)[number];

export interface Schedule {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  decay: Decay;
  /** Cosine floor as a fraction of the peak (default 0). */
  minLrRatio?: number;
}

export function learningRate(step: number, s: Schedule): number {
  const W = s.warmupSteps;
  if (step < W) return (s.peakLr * step) / Math.max(1, W);
  const span = Math.max(1, s.totalSteps - W);
  switch (s.decay) {
    case 'constant':
      return s.peakLr;
    case 'linear':
      return s.peakLr * Math.max(0, (s.totalSteps - step) / span);
    case 'cosine': {
      const m = s.minLrRatio ?? 0;
      const p = Math.min(1, (step - W) / span);
      return s.peakLr * (m + (1 - m) * 0.5 * (1 + Math.cos(Math.PI * p)));
    }
  }
}
