// A JobContext for the terminal: a progress bar on stderr (when it is a TTY,
// else a line every few seconds) and Ctrl-C or SIGTERM (`kill`) → abort the
// job's signal, so a training run pauses at a checkpoint instead of dying.
import cliProgress from 'cli-progress';
import type { JobContext, JobProgress } from '../jobs/job';

function formatMetrics(m: Record<string, number> | undefined): string {
  if (!m) return '';
  return Object.entries(m)
    .map(([k, v]) => `${k} ${Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(4)}`)
    .join('  ');
}

export interface CliJob {
  ctx: JobContext;
  /** Stops the bar and removes the signal handlers. */
  finish(): void;
}

/** `quiet` (e.g. with --json) prints nothing; Ctrl-C still aborts. */
export function cliJob(label: string, opts: { quiet?: boolean } = {}): CliJob {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143); // a second one: stop now
    process.stderr.write(`\n${label}: stopping (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to quit at once)…\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tty = process.stderr.isTTY && !opts.quiet;
  const bar = tty
    ? new cliProgress.SingleBar(
        { format: `${label} [{bar}] {percentage}% {value}/{total} {unit} {phase} {metrics}`, hideCursor: true, clearOnComplete: false, etaBuffer: 20 },
        cliProgress.Presets.shades_classic,
      )
    : null;
  let started = false;
  let lastLine = 0;
  const progress = (p: JobProgress) => {
    if (opts.quiet) return;
    const payload = { unit: p.unit ?? '', phase: p.phase ?? '', metrics: formatMetrics(p.metrics) };
    if (bar) {
      if (!started && p.total !== undefined) {
        bar.start(p.total, p.done ?? 0, payload);
        started = true;
      } else if (started) {
        if (p.total !== undefined) bar.setTotal(p.total);
        bar.update(p.done ?? 0, payload);
      }
      return;
    }
    const now = Date.now();
    const last = p.total !== undefined && p.done === p.total;
    if (now - lastLine > 5000 || last) {
      lastLine = now;
      const frac = p.total ? ` ${p.done ?? 0}/${p.total} ${payload.unit}` : '';
      process.stderr.write(`${label}:${frac} ${payload.phase} ${payload.metrics}${p.message ? ' ' + p.message : ''}\n`);
    }
  };
  return {
    ctx: { signal: controller.signal, progress },
    finish() {
      if (bar && started) bar.stop();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
}
