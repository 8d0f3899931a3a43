// The whole project is strict TypeScript: engine and tests, the Electron shell,
// and the Svelte UI (svelte-check) — checked as part of `npm test`.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const bin = (name: string) => path.join(root, 'node_modules/.bin', name);

function check(cmd: string, args: string[]): string {
  try {
    execFileSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    return '';
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return `${err.stdout ?? ''}${err.stderr ?? ''}`.trim();
  }
}

describe('type checks', () => {
  it('engine, tests and benchmarks (tsc --strict)', () => {
    expect(check(bin('tsc'), ['-p', 'tsconfig.json', '--noEmit'])).toBe('');
  });
  it('the Electron shell', () => {
    expect(check(bin('tsc'), ['-p', 'electron/tsconfig.json'])).toBe('');
  });
  it('the Svelte UI (svelte-check)', () => {
    expect(
      check(bin('svelte-check'), ['--tsconfig', 'renderer/tsconfig.json', '--threshold', 'error', '--output', 'machine'])
        .split('\n')
        .filter((l) => / ERROR /.test(l)),
    ).toEqual([]);
  });
});
