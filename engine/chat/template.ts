// Chat templates: how a conversation becomes the text a model continues.
// Every template is Jinja (rendered with @huggingface/jinja, as transformers
// does); base models without one get the plain template below. Chat and
// fine-tuning render through this one module, so a model is trained on
// exactly the prompts it will see.
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from '../tokenizer/tokenizer';

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * The plain template for base models: readable headings a small model can
 * learn quickly; each answer ends with the end-of-sequence token.
 *
 *   {system}
 *
 *   ### User:
 *   {question}
 *
 *   ### Assistant:
 *   {answer}</s>
 */
export const PLAIN_TEMPLATE = [
  "{%- if messages[0]['role'] == 'system' and messages[0]['content'] %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}",
  "{%- for m in messages %}",
  "{%- if m['role'] == 'user' %}{{ '### User:\\n' + m['content'] + '\\n\\n' }}",
  "{%- elif m['role'] == 'assistant' %}{{ '### Assistant:\\n' + m['content'] + eos_token + '\\n\\n' }}",
  '{%- endif %}',
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}",
].join('');

export interface ChatTemplate {
  /** "plain", "model" (the folder's tokenizer_config.json) or "custom". */
  name: string;
  source: string;
}

/** The template a model folder asks for, else the plain one. */
export function modelTemplate(modelDir: string): ChatTemplate {
  const file = path.join(modelDir, 'tokenizer_config.json');
  if (fs.existsSync(file)) {
    try {
      const t = JSON.parse(fs.readFileSync(file, 'utf8')).chat_template;
      if (typeof t === 'string' && t.trim()) return { name: 'model', source: t };
    } catch {
      // A broken tokenizer_config.json is reported by the tokenizer loader; the chat falls back to plain.
    }
  }
  return { name: 'plain', source: PLAIN_TEMPLATE };
}

const compiled = new Map<string, Template>();

/** Renders a conversation. Throws a one-line error for a template that does not parse or render. */
export function renderChat(
  source: string,
  messages: ChatTurn[],
  opts: { addGenerationPrompt: boolean; bosToken?: string; eosToken?: string },
): string {
  let t = compiled.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new Error(`chat template does not parse: ${(e as Error).message.split('\n')[0]}`);
    }
    compiled.set(source, t);
  }
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt,
      bos_token: opts.bosToken ?? '<s>',
      eos_token: opts.eosToken ?? '</s>',
    });
  } catch (e) {
    throw new Error(`chat template failed to render: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * Encodes rendered chat text, turning the literal special tokens the template
 * wrote ("<s>", "</s>") into their ids — as transformers' tokenizers do for
 * chat templates — and everything between them as ordinary text.
 */
export function encodeChatText(tokenizer: Tokenizer, text: string, opts: { bos: boolean }): number[] {
  const specials = new Map([
    [tokenizer.idToPiece(tokenizer.bosId), tokenizer.bosId],
    [tokenizer.idToPiece(tokenizer.eosId), tokenizer.eosId],
  ]);
  const pattern = new RegExp([...specials.keys()].map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const ids: number[] = opts.bos ? [tokenizer.bosId] : [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) ids.push(...tokenizer.encode(text.slice(last, m.index)));
    ids.push(specials.get(m[0])!);
    last = m.index + m[0].length;
  }
  if (last < text.length) ids.push(...tokenizer.encode(text.slice(last)));
  return ids;
}
