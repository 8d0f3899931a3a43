// The workbench home: one folder holding the database and every file it
// describes. Paths inside it are stored relative to it, so a home that is moved
// or copied elsewhere (or reached through a different mount point) still works.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DB_FILE = 'workbench.db';

export interface HomeLayout {
  root: string;
  db: string;
  models: string;
  datasets: string;
  runs: string;
  checkpoints: string;
  /** Models written for other tools (mlw export, the model page's Export). */
  exports: string;
}

export interface HomeEnvironment {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  homedir: string;
}

const currentEnvironment = (): HomeEnvironment => ({ env: process.env, platform: process.platform, homedir: os.homedir() });

/** The platform's app-data folder for the workbench (used when neither --home nor MLW_HOME is given). */
export function defaultHome({ env, platform, homedir }: HomeEnvironment): string {
  if (platform === 'win32') {
    return path.win32.join(env.APPDATA || path.win32.join(homedir, 'AppData', 'Roaming'), 'MobileLLM Workbench');
  }
  if (platform === 'darwin') return path.posix.join(homedir, 'Library', 'Application Support', 'MobileLLM Workbench');
  // XDG base directory spec: a relative XDG_DATA_HOME is invalid and must be ignored.
  const xdg = env.XDG_DATA_HOME && path.posix.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : undefined;
  return path.posix.join(xdg ?? path.posix.join(homedir, '.local', 'share'), 'mobilellm-workbench');
}

/** --home beats MLW_HOME beats the platform default. */
export function resolveHome(flag?: string, environment: HomeEnvironment = currentEnvironment()): string {
  if (flag) return path.resolve(flag);
  if (environment.env.MLW_HOME) return path.resolve(environment.env.MLW_HOME);
  return defaultHome(environment);
}

export function homeLayout(root: string): HomeLayout {
  return {
    root,
    db: path.join(root, DB_FILE),
    models: path.join(root, 'models'),
    datasets: path.join(root, 'datasets'),
    runs: path.join(root, 'runs'),
    checkpoints: path.join(root, 'checkpoints'),
    exports: path.join(root, 'exports'),
  };
}

export function createHomeFolders(layout: HomeLayout): void {
  for (const dir of [layout.root, layout.models, layout.datasets, layout.runs, layout.checkpoints]) {
    fs.mkdirSync(dir, { recursive: true });
  }
}

/** How a path is kept in the database: relative (with '/') when inside the home, absolute otherwise. */
export function toStoredPath(root: string, absolute: string): string {
  const resolved = path.resolve(absolute);
  if (!isInside(root, resolved)) return resolved;
  return path.relative(root, resolved).split(path.sep).join('/');
}

export function fromStoredPath(root: string, stored: string): string {
  return path.isAbsolute(stored) ? stored : path.join(root, ...stored.split('/'));
}

export function isInside(root: string, absolute: string): boolean {
  const rel = path.relative(root, absolute);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
