// vitest globalSetup: the end-to-end and packaging tests use the built UI and
// shell, so build both once per test run (a few seconds).
// @ts-expect-error -- a plain JS build script without type declarations
import { buildShell, buildUi } from '../../scripts/build.js';

export default async function setup(): Promise<void> {
  await buildUi();
  await buildShell();
}
