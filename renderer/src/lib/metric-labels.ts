// Live training metrics as people read them: "1,534 tokens/s", "ETA 3 min",
// "learning rate 5.0e-4" instead of the engine's keys (tokens_per_s, eta_s, lr).

const NAMES: Record<string, string> = {
  loss: 'loss',
  val_loss: 'validation loss',
  val_ppl: 'validation perplexity',
  lr: 'learning rate',
  tokens_per_s: 'tokens/s',
  eta_s: 'ETA',
  epoch: 'epoch',
  grad_norm: 'gradient norm',
};

/** The name people read for a metric key ("tokens_per_s" → "tokens/s"). */
export function metricName(key: string): string {
  return NAMES[key] ?? key.replace(/_/g, ' ');
}

/** A duration in seconds as "45 s", "3 min", "1.5 h". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s >= 3600) return `${(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${Math.round(s / 60)} min`;
  return `${Math.round(s)} s`;
}

/** One live metric, labelled: "loss 2.345", "1,534 tokens/s", "ETA 3 min", "epoch 0.50". */
export function metricText(key: string, value: number): string {
  switch (key) {
    case 'tokens_per_s':
      return `${Math.round(value).toLocaleString('en-US')} tokens/s`;
    case 'eta_s':
      return `ETA ${formatDuration(value)}`;
    case 'lr':
      return `learning rate ${value.toExponential(1)}`;
    case 'epoch':
      return `epoch ${value.toFixed(2)}`;
    default:
      return `${metricName(key)} ${Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(4)}`;
  }
}
