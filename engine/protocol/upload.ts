// A text goes to datasets.upload in pieces of at most UPLOAD_PIECE_CHARS, so
// each request fits a frame. A piece never ends inside a surrogate pair (each
// is valid text on its own, and the engine writes what it was sent). The first
// announces the whole text's UTF-8 bytes: a file over the limit is refused
// before the rest is sent.
import { UPLOAD_PIECE_CHARS, type Params, type Result } from './protocol';

/** `text` cut into upload pieces (an empty text is one empty piece). */
export function uploadPieces(text: string): string[] {
  const pieces: string[] = [];
  for (let start = 0; start < text.length;) {
    let end = Math.min(start + UPLOAD_PIECE_CHARS, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--; // a high surrogate goes with its low one
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces.length ? pieces : [''];
}

/** One datasets.upload request, as the caller's transport sends it. */
export type UploadCall = (params: Params<'datasets.upload'>) => Promise<Result<'datasets.upload'>>;

/** Saves `text` as the dataset file `name` through `upload`, a request per piece; resolves to the file's path. */
export async function uploadDataset(upload: UploadCall, name: string, text: string): Promise<string> {
  const pieces = uploadPieces(text);
  const encoder = new TextEncoder();
  const bytes = pieces.reduce((n, piece) => n + encoder.encode(piece).byteLength, 0);
  let uploadId: string | undefined;
  for (const content of pieces) {
    const answer = await upload({ name, bytes, content, uploadId });
    if (answer.path !== null) return answer.path;
    uploadId = answer.uploadId;
  }
  throw new Error(`the engine did not save ${name}: it took ${bytes} bytes without completing the upload`);
}
