// Chat templates: a conversation → the text a model continues, in the Jinja
// dialect of Hugging Face's tokenizer_config.json `chat_template`, rendered
// with @huggingface/jinja as transformers does. The chat window, the answer
// comparison and fine-tuning all render through this one module, so a model
// is trained on exactly the prompts it will see.
//
// Models without a template (MobileLLM's base checkpoints have none) get the
// plain default below, one header per turn, the answer closed by the EOS token:
//
//   <s>### System:
//   You are terse.
//
//   ### User:
//   What is 2+2?
//
//   ### Assistant:
//   4</s>### User:
//   …
//
// For training, the characters of each assistant turn are found by rendering
// the conversation up to that turn with the generation prompt and then through
// it: the difference is the answer (with whatever the template closes it with,
// e.g. the EOS), the part the loss covers by default.
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { z } from 'zod';
import type { Tokenizer } from '../tokenizer/tokenizer';

export const ROLES = ['system', 'user', 'assistant'] as const;
export type Role = (typeof ROLES)[number];

export interface ChatMessage {
  role: Role;
  content: string;
}

export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}### System:\n{{ message['content'] }}\n\n" +
  "{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n" +
  "{% elif message['role'] == 'assistant' %}### Assistant:\n{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}### Assistant:\n{% endif %}';

/** Text that means a model on the plain template has started writing the next turn itself. */
const PLAIN_STOPS = ['### User:', '### Assistant:'];

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    readonly bosToken: string,
    readonly eosToken: string,
    /** Where the template came from, for messages: "default", "custom" (a chat's own) or a tokenizer_config.json path. */
    readonly origin = 'default',
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new Error(`${origin}: chat template does not parse: ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
  }

  /** "plain" (the default), "custom" (a chat's own) or "model" (the model folder's). */
  get name(): 'plain' | 'custom' | 'model' {
    return this.origin === 'default' ? 'plain' : this.origin === 'custom' ? 'custom' : 'model';
  }

  /** Strings that end an answer early: a base model on the plain template tends to write the next turn itself. */
  get stops(): string[] {
    return this.name === 'plain' ? PLAIN_STOPS : [];
  }

  /** Generated text up to the first stop string, and whether there was one. */
  cutAtStop(text: string): { text: string; stopped: boolean } {
    const hit = this.stops
      .map((s) => text.indexOf(s))
      .filter((i) => i >= 0)
      .sort((a, b) => a - b)[0];
    return hit === undefined ? { text, stopped: false } : { text: text.slice(0, hit), stopped: true };
  }

  render(messages: readonly ChatMessage[], addGenerationPrompt = false): string {
    try {
      return this.template.render({ messages, bos_token: this.bosToken, eos_token: this.eosToken, add_generation_prompt: addGenerationPrompt });
    } catch (e) {
      throw new Error(`${this.origin}: chat template failed: ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
  }

  /**
   * The whole conversation and the [start, end) character spans of its
   * assistant turns. Fails if the template renders a conversation's prefix as
   * something other than a prefix of the whole (then turns cannot be located).
   */
  renderWithAnswers(messages: readonly ChatMessage[]): { text: string; answers: [number, number][] } {
    const text = this.render(messages);
    const answers: [number, number][] = [];
    messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      const before = this.render(messages.slice(0, i), true);
      const through = i === messages.length - 1 ? text : this.render(messages.slice(0, i + 1));
      if (!through.startsWith(before) || !text.startsWith(through)) {
        throw new Error(
          `${this.origin}: the chat template does not render conversations incrementally, so answers cannot be located (train on all tokens instead)`,
        );
      }
      answers.push([before.length, through.length]);
    });
    return { text, answers };
  }
}

const TokenSetting = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();

const TokenizerConfigSchema = z.looseObject({
  chat_template: z.union([z.string(), z.array(z.looseObject({ name: z.string(), template: z.string() }))]).nullish(),
  bos_token: TokenSetting,
  eos_token: TokenSetting,
});

const tokenText = (t: z.infer<typeof TokenSetting>): string | undefined => (typeof t === 'string' ? t : t?.content);

/**
 * The chat template of a model folder: tokenizer_config.json's chat_template
 * (the one named "default" when there are several), else DEFAULT_CHAT_TEMPLATE.
 * `bos`/`eos` are the tokenizer's own pieces, used when the config names none.
 */
export function loadChatTemplate(modelDir: string, bos = '<s>', eos = '</s>'): ChatTemplate {
  const file = path.join(modelDir, 'tokenizer_config.json');
  if (!fs.existsSync(file)) return new ChatTemplate(DEFAULT_CHAT_TEMPLATE, bos, eos);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`, { cause: e });
  }
  const parsed = TokenizerConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: invalid "${issue.path.join('.')}": ${issue.message}`);
  }
  const c = parsed.data;
  const bosToken = tokenText(c.bos_token) ?? bos;
  const eosToken = tokenText(c.eos_token) ?? eos;
  const source = Array.isArray(c.chat_template) ? c.chat_template.find((t) => t.name === 'default')?.template : c.chat_template;
  if (!source) return new ChatTemplate(DEFAULT_CHAT_TEMPLATE, bosToken, eosToken);
  return new ChatTemplate(source, bosToken, eosToken, file);
}

/**
 * Encodes rendered chat text, turning the literal special tokens the template
 * wrote ("<s>", "</s>") into their ids — as transformers' tokenizers do for
 * chat templates — and everything between them as ordinary text. BOS comes
 * first unless the template wrote it.
 */
export function encodeChatText(tokenizer: Tokenizer, text: string): number[] {
  const specials = new Map([
    [tokenizer.idToPiece(tokenizer.bosId), tokenizer.bosId],
    [tokenizer.idToPiece(tokenizer.eosId), tokenizer.eosId],
  ]);
  const pattern = new RegExp([...specials.keys()].map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const ids: number[] = text.startsWith(tokenizer.idToPiece(tokenizer.bosId)) ? [] : [tokenizer.bosId];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) ids.push(...tokenizer.encode(text.slice(last, m.index)));
    ids.push(specials.get(m[0])!);
    last = m.index + m[0].length;
  }
  if (last < text.length) ids.push(...tokenizer.encode(text.slice(last)));
  return ids;
}
