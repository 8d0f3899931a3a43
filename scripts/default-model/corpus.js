#!/usr/bin/env node
// The Debian part of the default model's pre-training text, as plain text files
// in OUT_DIR: the King James Bible (bible-kjv-text, dumped by bible-kjv's own
// reader), Ambrose Bierce's The Devil's Dictionary (dict-devil) and the Jargon
// File 4.4.7 (dict-jargon), all public domain (each package's copyright file
// says so). The npm part (Moby-Dick, the State of the Union addresses) is read
// by `mlw pretrain --corpus moby-dick,sotu`. Needs apt-get (download only: no
// root, nothing installed) and dpkg-deb.
// Usage: node scripts/default-model/corpus.js OUT_DIR
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const out = process.argv[2];
if (!out) throw new Error('usage: node scripts/default-model/corpus.js OUT_DIR');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-corpus-'));
const PACKAGES = ['bible-kjv', 'bible-kjv-text', 'dict-devil', 'dict-jargon'];
execFileSync('apt-get', ['download', ...PACKAGES], { cwd: work, stdio: 'inherit' });
const root = path.join(work, 'root');
for (const deb of fs.readdirSync(work).filter((f) => f.endsWith('.deb'))) execFileSync('dpkg-deb', ['-x', path.join(work, deb), root]);
fs.mkdirSync(out, { recursive: true });

/** Lines wrapped at a fixed width joined back into one line per paragraph (blank lines separate paragraphs). */
const unwrap = (text) =>
  text
    .split(/\n\s*\n/)
    .map((p) => p.replace(/\s*\n\s*/g, ' ').trim())
    .filter(Boolean)
    .join('\n\n');

// King James Bible: every verse from Genesis 1:1 to Revelation 22:21; a chapter is a paragraph, without verse numbers.
const kjv = execFileSync(path.join(root, 'usr/bin/bible'), ['-p', path.join(root, 'usr/lib'), 'Gen1:1-Rev22:21'], { maxBuffer: 64 << 20 }).toString('utf8');
const chapters = kjv
  .split(/\n(?=\S[^\n]* \d+\n)/) // "Genesis 1" headings start a chapter
  .map((ch) => {
    const [heading, ...verses] = ch.trim().split('\n');
    const body = verses
      .join('\n')
      .replace(/^\s+\d+\s+/gm, '')
      .replace(/\s*\n\s*/g, ' ')
      .trim();
    return body ? `${heading.trim()}\n\n${body}` : '';
  })
  .filter(Boolean);
fs.writeFileSync(path.join(out, 'kjv-bible.txt'), chapters.join('\n\n') + '\n');

// dictd databases: entries without dictfmt's own 00-database-* records; {cross-references} as plain words.
function dictText(name) {
  const raw = zlib.gunzipSync(fs.readFileSync(path.join(root, `usr/share/dictd/${name}.dict.dz`))).toString('utf8');
  const entries = raw.split(/\n(?=\S)/).filter((e) => !e.startsWith('00-database') && !e.startsWith('00database'));
  return unwrap(entries.join('\n\n').replace(/\{\s*([^}]*?)\s*\}/g, (_, w) => w.replace(/\s+/g, ' ')));
}
fs.writeFileSync(path.join(out, 'devils-dictionary.txt'), dictText('devil') + '\n');
fs.writeFileSync(path.join(out, 'jargon-file.txt'), dictText('jargon') + '\n');

for (const pkg of PACKAGES) fs.copyFileSync(path.join(root, `usr/share/doc/${pkg}/copyright`), path.join(out, `${pkg}.copyright`));
fs.rmSync(work, { recursive: true, force: true });
for (const f of fs.readdirSync(out).filter((f) => f.endsWith('.txt'))) console.log(`${f}: ${fs.statSync(path.join(out, f)).size} bytes`);
