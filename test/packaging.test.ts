// Installers cannot be built offline (Electron's zip cannot be downloaded), so
// check what can run here: electron-builder validates the configuration with
// its own schema, and every file pattern it would pack matches something after
// the build.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { getConfig, validateConfiguration } from 'app-builder-lib/out/util/config/config';
import { DebugLogger } from 'builder-util';

const root = path.resolve(import.meta.dirname, '..');

describe('electron-builder configuration', () => {
  it('passes electron-builder’s own validation', async () => {
    const config = await getConfig(root, path.join(root, 'electron-builder.yml'), null);
    await expect(validateConfiguration(config, new DebugLogger(false))).resolves.toBeUndefined();
    expect(config.linux?.target).toEqual(['AppImage', 'deb']);
    expect(config.mac?.target).toBe('dmg');
    expect(config.win?.target).toBe('nsis');
  });

  it('rejects a broken configuration (the validation is real)', async () => {
    const config = await getConfig(root, path.join(root, 'electron-builder.yml'), null);
    await expect(validateConfiguration({ ...config, appIdd: 'typo' } as never, new DebugLogger(false))).rejects.toThrow(/appIdd/);
    await expect(validateConfiguration({ ...config, nsis: { oneClick: 'sometimes' } } as never, new DebugLogger(false))).rejects.toThrow(/oneClick/);
  });

  it('finds every file it would pack after `npm run build`', () => {
    for (const f of ['package.json', 'bin/mlw.js', 'electron/dist/main.cjs', 'electron/dist/preload.cjs', 'renderer/dist/index.html', 'engine/cli/main.ts']) {
      expect(fs.existsSync(path.join(root, f)), f).toBe(true);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.main).toBe('electron/dist/main.cjs');
    expect(fs.readdirSync(path.join(root, 'renderer/dist/assets')).some((f) => f.endsWith('.js'))).toBe(true);
  });
});
