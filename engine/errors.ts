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

// Control characters (C0, DEL, C1), line and paragraph separators, format
// characters (zero-width, bidi overrides, the BOM, tag characters) and lone surrogates.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu;
const SHORT_ESCAPES: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * `text` with every character that is invisible or that a terminal obeys
 * shown as an escape (`\x1b`, `\r`, `\u202e`): a message quoting a data file
 * can then neither move the cursor, recolour or retitle the terminal, nor hide
 * what it quotes.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!;
    if (SHORT_ESCAPES[c]) return SHORT_ESCAPES[c];
    if (code < 0x100) return `\\x${code.toString(16).padStart(2, '0')}`;
    return code < 0x10000 ? `\\u${code.toString(16).padStart(4, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/** The one line to show for any error: the first line of its message, printable. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return printable(msg.split(/\r?\n/)[0]);
}
