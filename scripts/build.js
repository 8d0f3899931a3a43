#!/usr/bin/env node
// npm run build: the UI (Vite → renderer/dist) and the desktop shell
// (esbuild → electron/dist). `--if-needed` skips what is already built.
import fs from 'node:fs';
import path from 'node:path';
import { build as viteBuild } from 'vite';
import { build as esbuild } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');
const ifNeeded = process.argv.includes('--if-needed');

export async function buildUi() {
  await viteBuild({ configFile: path.join(root, 'renderer/vite.config.ts'), logLevel: 'warn' });
}

export async function buildShell() {
  for (const name of ['main', 'preload']) {
    await esbuild({
      entryPoints: [path.join(root, `electron/${name}.ts`)],
      outfile: path.join(root, `electron/dist/${name}.cjs`),
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      external: ['electron'],
      logLevel: 'warning',
    });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!ifNeeded || !fs.existsSync(path.join(root, 'renderer/dist/index.html'))) await buildUi();
  if (!ifNeeded || !fs.existsSync(path.join(root, 'electron/dist/main.cjs'))) await buildShell();
}
