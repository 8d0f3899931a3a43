// What kind of failure an error is, carried by the error itself, so that the
// engine service answers with the right protocol error code (and any other
// caller tells failures apart) without reading messages:
//
//   not_found   the thing asked for does not exist (a record id, a file)
//   bad_input   the request cannot be done as given (wrong combination, unusable folder)
//   conflict    it cannot be done in the current state (a completed run resumed)
//   busy        someone else holds it right now (a run running in another process)
//
// Any error class can carry a kind: a `kind` property with one of these values.

export const ERROR_KINDS = ['not_found', 'bad_input', 'conflict', 'busy'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** An error of a known kind; the message is the one line to show. */
export class KindedError extends Error {
  override name = 'KindedError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
  }
}

const isErrorKind = (k: unknown): k is ErrorKind => (ERROR_KINDS as readonly unknown[]).includes(k);

/** The kind an error carries, or null for one that carries none (an unexpected failure). */
export function errorKind(err: unknown): ErrorKind | null {
  const kind = typeof err === 'object' && err !== null && 'kind' in err ? err.kind : undefined;
  return isErrorKind(kind) ? kind : null;
}
