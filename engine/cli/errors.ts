/** A mistake in how a command was called: reported in one line, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The one-line message of any error (the first line of it). */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0];
}
