// `mlw serve` on a clone whose UI is not built builds it (as `npm start`
// does) and serves it, instead of answering "run npm run build".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/web';

describe('mlw serve without a built UI', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlw-serve-build-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('builds the UI into its folder, then serves the app', async () => {
    const ui = path.join(tmp, 'ui');
    const proc = spawn(process.execPath, [path.join(ROOT, 'bin/mlw.js'), 'serve', '--ui', ui], {
      env: { ...process.env, MLW_HOME: path.join(tmp, 'home') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        proc.stdout.on('data', () => {
          const m = /Open (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out);
          if (m) resolve(m[1]);
        });
        proc.on('exit', (code) => reject(new Error(`mlw serve exited with ${code}:\n${out}`)));
      });
      expect(out).toContain(`The UI is not built: building it into ${ui}`);
      expect(fs.existsSync(path.join(ui, 'index.html'))).toBe(true);
      const page = await fetch(url);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<div id="app"');
      expect(html).not.toContain('npm run build');
    } finally {
      proc.kill('SIGTERM');
    }
  }, 300_000);
});
