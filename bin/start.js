#!/usr/bin/env node
// npm start: the desktop app when Electron's binary is installed, otherwise
// (say so in one line) the same UI in web mode on 127.0.0.1.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const root = path.resolve(import.meta.dirname, '..');
const require = createRequire(import.meta.url);

/** Electron's binary, without requiring 'electron' (which would try to download it). */
function electronBinary() {
  try {
    const dir = path.dirname(require.resolve('electron/package.json'));
    const rel = fs.readFileSync(path.join(dir, 'path.txt'), 'utf8').trim();
    const bin = path.join(dir, 'dist', rel);
    return fs.existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

const build = spawn(process.execPath, [path.join(root, 'scripts/build.js'), '--if-needed'], { stdio: 'inherit' });
build.on('exit', (code) => {
  if (code !== 0) process.exit(code ?? 1);
  const electron = electronBinary();
  if (electron) {
    const child = spawn(electron, [root], { stdio: 'inherit' });
    child.on('exit', (c) => process.exit(c ?? 0));
    return;
  }
  console.log(
    'Electron is not installed (its binary download is skipped offline): starting web mode instead — for the desktop window run `node node_modules/electron/install.js` on a connected machine.',
  );
  const web = spawn(process.execPath, [path.join(root, 'bin/mlw.js'), 'serve', ...process.argv.slice(2)], { stdio: 'inherit' });
  const stop = () => web.kill('SIGTERM');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  web.on('exit', (c) => process.exit(c ?? 0));
});
