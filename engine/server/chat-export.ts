// A conversation (the branch on screen) as Markdown or JSON, for the Export button.
import type { Chat, Message } from '../store/records';

export function chatToMarkdown(chat: Chat, thread: Message[], modelName: string): string {
  const lines = [`# ${chat.title}`, '', `*Model: ${modelName} · exported ${new Date().toISOString()}*`, ''];
  if (chat.systemPrompt) lines.push('## System', '', chat.systemPrompt, '');
  for (const m of thread) {
    lines.push(`## ${m.role === 'user' ? 'User' : m.role === 'assistant' ? 'Assistant' : 'System'}`, '', m.content, '');
    const t = m.timings;
    if (m.role === 'assistant' && t?.tokensPerSecond)
      lines.push(`*${m.contentTokens ?? '?'} tokens, ${t.tokensPerSecond.toFixed(1)} tokens/s${t.stopped ? ', stopped' : ''}*`, '');
  }
  return lines.join('\n');
}

export function chatToJson(chat: Chat, thread: Message[], template: { name: string }): string {
  return (
    JSON.stringify(
      {
        title: chat.title,
        modelId: chat.modelId,
        systemPrompt: chat.systemPrompt,
        sampling: chat.sampling,
        template: template.name,
        messages: thread.map((m) => ({
          role: m.role,
          content: m.content,
          tokens: m.contentTokens,
          timings: m.timings,
          createdAt: new Date(m.createdAt).toISOString(),
        })),
      },
      null,
      2,
    ) + '\n'
  );
}
