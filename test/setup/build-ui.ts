// vitest globalSetup: the end-to-end tests drive the built UI, so build it
// once per test run (a second or two with Vite).
import path from 'node:path';
import { build } from 'vite';

export default async function setup(): Promise<void> {
  const root = path.resolve(import.meta.dirname, '../../renderer');
  await build({ configFile: path.join(root, 'vite.config.ts'), logLevel: 'warn' });
}
