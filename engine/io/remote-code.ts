// The modeling file a layer-shared config.json names in its auto_map
// (engine/model/config.ts): resources/export/modeling_mobilellm.py, a
// subclass of transformers' LLaMA that runs the layer schedule. Every folder
// holding a compact layer-shared config.json carries a copy.
import fs from 'node:fs';
import path from 'node:path';
import { REMOTE_CODE_MODULE, type MobileLLMConfig } from '../model/config';

export const REMOTE_CODE_FILE = `${REMOTE_CODE_MODULE}.py`;
const SOURCE = path.resolve(import.meta.dirname, '../../resources/export', REMOTE_CODE_FILE);

/** The files (name → contents) a folder of this architecture needs beside its config.json: the modeling file when it shares layers. */
export function remoteCodeFiles(c: MobileLLMConfig): Record<string, string> {
  if (c.sharing.strategy === 'none') return {};
  if (!fs.existsSync(SOURCE)) throw new Error(`${SOURCE}: missing (the modeling file of layer-shared models)`);
  return { [REMOTE_CODE_FILE]: fs.readFileSync(SOURCE, 'utf8') };
}
