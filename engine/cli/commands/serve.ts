// mlw serve: the engine service, in web mode (UI + protocol on 127.0.0.1) or
// as the desktop shell's child process (--ipc).
import path from 'node:path';
import fs from 'node:fs';
import type { Command } from 'commander';
import { describeBackend, initBackend, type BackendName } from '../../backend/select';
import { openStore } from '../../store/open';
import { EngineService } from '../../server/service';
import { startWebServer } from '../../server/web';
import { serveIpc } from '../../server/ipc';
import { ensureDefaultModel } from '../../server/resources';
import { parseNumber } from '../format';

const ROOT = path.resolve(import.meta.dirname, '../../..');

/** Builds the UI into `dir` when it holds none (a fresh clone, as `npm start` does): Vite with the renderer's config. */
async function buildUiIfMissing(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'index.html'))) return;
  console.log(`The UI is not built: building it into ${dir} (once)…`);
  const { build } = await import('vite');
  await build({ configFile: path.join(ROOT, 'renderer/vite.config.ts'), logLevel: 'warn', build: { outDir: path.resolve(dir), emptyOutDir: true } });
}

export function appVersion(): string {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('run the engine: web mode on 127.0.0.1 (prints the URL with its token), or --ipc for the desktop shell')
    .option('--port <n>', 'port (default: a free one)')
    .option('--ipc', 'speak the protocol over the parent process IPC channel')
    .option('--ui <dir>', 'built UI folder (built there first when it holds none)', path.join(ROOT, 'renderer/dist'))
    .action(async (opts: { port?: string; ipc?: boolean; ui: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      const backend = await initBackend(g.backend);
      const store = openStore({ home: g.home });
      ensureDefaultModel(store);
      const service = new EngineService(store, appVersion());
      const shutdown = async () => {
        await service.close();
        process.exit(0);
      };
      process.on('SIGTERM', shutdown);
      if (opts.ipc) {
        serveIpc(service);
        return new Promise(() => {}); // runs until the shell disconnects
      }
      process.on('SIGINT', shutdown);
      await buildUiIfMissing(opts.ui);
      const web = await startWebServer(service, {
        staticDir: opts.ui,
        port: opts.port ? parseNumber(opts.port, '--port', { integer: true, min: 1, max: 65535 }) : undefined,
      });
      console.log(`MobileLLM Workbench ${appVersion()} — engine on ${describeBackend(backend)}, data in ${store.layout.root}`);
      console.log(`Open ${web.url}`);
      return new Promise(() => {}); // serve until stopped
    });
}
