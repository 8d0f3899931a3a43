#!/usr/bin/env node
// Writes resources/eval/held-out-choice.jsonl, the bundled zero-shot set, from
// resources/eval/held-out.txt (engine/eval/held-out-choice.ts says how).
// `--check` only compares the shipped file with a fresh build.
import fs from 'node:fs';
import path from 'node:path';
import { register } from 'tsx/esm/api';

register();
const { heldOutChoiceFile, HELD_OUT_CHOICE_PATH } = await import('../engine/eval/held-out-choice.ts');
const fresh = heldOutChoiceFile();
if (process.argv.includes('--check')) {
  const same = fs.existsSync(HELD_OUT_CHOICE_PATH) && fs.readFileSync(HELD_OUT_CHOICE_PATH, 'utf8') === fresh;
  console.log(same ? `${HELD_OUT_CHOICE_PATH}: up to date` : `${HELD_OUT_CHOICE_PATH}: differs from a fresh build`);
  process.exitCode = same ? 0 : 1;
} else {
  fs.writeFileSync(HELD_OUT_CHOICE_PATH, fresh);
  console.log(`${fresh.split('\n').length - 1} items → ${path.relative(process.cwd(), HELD_OUT_CHOICE_PATH)}`);
}
