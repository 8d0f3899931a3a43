// What the chat window says about an answer: why it ended, and the runtime
// that wrote it, in words.
import { RUNTIME_LABELS, type Message } from '../../../engine/protocol/protocol';

type Timings = NonNullable<Message['timings']>;

const FINISHES: Record<NonNullable<Timings['finish']>, { label: string; hint: string }> = {
  eos: { label: 'end of text', hint: 'The model ended the answer with its end-of-text token.' },
  stop: { label: 'stop string', hint: 'The answer reached a stop string of the chat template (the start of the next turn).' },
  length: { label: 'length limit', hint: 'The answer reached Max new tokens (Settings).' },
  context: { label: 'context full', hint: "Prompt and answer filled the model's context." },
  cancelled: { label: 'stopped', hint: 'You stopped the answer.' },
};

/** Why an answer ended; null for an answer recorded before the reason was (unless it was stopped). */
export function finishLabel(t: Timings): { label: string; hint: string } | null {
  if (t.finish) return FINISHES[t.finish];
  return t.stopped ? FINISHES.cancelled : null;
}

/** The runtime of the newest answer in `thread` that names one, as people call it ("ONNX Runtime"). */
export function answerRuntime(thread: Message[]): string | null {
  for (let i = thread.length - 1; i >= 0; i--) {
    const name = thread[i].timings?.runtime;
    if (name) return RUNTIME_LABELS[name as keyof typeof RUNTIME_LABELS] ?? name;
  }
  return null;
}
