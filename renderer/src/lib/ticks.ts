// Ticks for axes that count things (steps, layers, blocks): whole numbers
// only, 1-2-5 spaced, about `target` of them between min and max.

export function integerTicks(min: number, max: number, target = 6): number[] {
  const lo = Math.ceil(min);
  const hi = Math.floor(max);
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) return [];
  const raw = Math.max(1, (hi - lo) / Math.max(1, target));
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  // The 1-2-5 step nearest to the raw one (on a log scale); at least 1.
  const step = [1, 2, 5, 10].map((m) => m * magnitude).reduce((a, b) => (Math.abs(Math.log(b / raw)) < Math.abs(Math.log(a / raw)) ? b : a));
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(t === 0 ? 0 : t); // never -0
  return ticks;
}
