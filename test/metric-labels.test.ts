// Live metrics carry human labels in the status bar and on the pages, not the
// engine's keys.
import { describe, expect, it } from 'vitest';
import { formatDuration, metricName, metricText } from '../renderer/src/lib/metric-labels';

describe('live metric labels', () => {
  it('name throughput, time left and the learning rate as people say them', () => {
    expect(metricText('tokens_per_s', 1534.4)).toBe('1,534 tokens/s');
    expect(metricText('eta_s', 185)).toBe('ETA 3 min');
    expect(metricText('eta_s', 42)).toBe('ETA 42 s');
    expect(metricText('eta_s', 5400)).toBe('ETA 1.5 h');
    expect(metricText('lr', 0.0005)).toBe('learning rate 5.0e-4');
    expect(metricText('epoch', 0.5)).toBe('epoch 0.50');
    expect(metricText('loss', 2.34567)).toBe('loss 2.346');
  });

  it('never show a raw key', () => {
    expect(metricName('val_loss')).toBe('validation loss');
    expect(metricName('some_new_metric')).toBe('some new metric');
    for (const key of ['tokens_per_s', 'eta_s', 'val_loss', 'grad_norm']) expect(metricText(key, 1)).not.toContain('_');
  });

  it('a duration that is not known reads as a dash', () => {
    expect(formatDuration(NaN)).toBe('—');
    expect(formatDuration(Infinity)).toBe('—');
  });
});
