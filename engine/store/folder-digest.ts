// The sha256 of a folder: the sha256 of its manifest, one line per file in
// byte order of the relative path, "<sha256 of the file>  <path with '/'>\n"
// (what `sha256sum` prints). Any change to a file's bytes, name or presence
// changes it.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

export interface FolderDigest {
  sha256: string;
  bytes: number;
  files: number;
}

const CHUNK = 4 << 20;

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(path.join(dir, entry.name), rel));
    else if (entry.isFile()) out.push(rel);
    else throw new Error(`${path.join(dir, entry.name)}: only plain files and folders can be digested`);
  }
  return out;
}

async function fileSha256(file: string, buffer: Buffer): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  const handle = await fs.promises.open(file, 'r');
  let bytes = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}

export async function digestFolder(dir: string): Promise<FolderDigest> {
  const files = listFiles(dir).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const manifest = crypto.createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK);
  let bytes = 0;
  for (const rel of files) {
    const f = await fileSha256(path.join(dir, ...rel.split('/')), buffer);
    manifest.update(`${f.sha256}  ${rel}\n`);
    bytes += f.bytes;
  }
  return { sha256: manifest.digest('hex'), bytes, files: files.length };
}

/** Total size of the files under `dir` (without reading them). */
export function folderBytes(dir: string): number {
  return listFiles(dir).reduce((sum, rel) => sum + fs.statSync(path.join(dir, ...rel.split('/'))).size, 0);
}
