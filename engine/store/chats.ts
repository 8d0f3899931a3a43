// store.chats: a chat's settings (model or checkpoint, system prompt, sampling); its messages are in messages.ts.
import { StoreError } from './errors';
import { SamplingSettings, parseJsonColumn, type Chat, type ChatPatch, type NewChat } from './records';
import { definedFields, json, withForeignKeys, type Sql } from './sql';

interface ChatRow {
  id: number;
  title: string;
  model_id: number | null;
  checkpoint_id: number | null;
  system_prompt: string;
  sampling: string;
  chat_template: string | null;
  created_at: number;
  updated_at: number;
}

const likePattern = (text: string): string => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export class ChatsRepo {
  constructor(private readonly sql: Sql) {}

  private toChat = (r: ChatRow): Chat => ({
    id: r.id,
    title: r.title,
    modelId: r.model_id,
    checkpointId: r.checkpoint_id,
    systemPrompt: r.system_prompt,
    sampling: parseJsonColumn(SamplingSettings, r.sampling, 'chat', r.id, 'sampling'),
    chatTemplate: r.chat_template,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  });

  private write(id: number | null, c: Required<NewChat>): Chat {
    const now = Date.now();
    const values = [c.title, c.modelId, c.checkpointId, c.systemPrompt, json(SamplingSettings.parse(c.sampling)), c.chatTemplate];
    return withForeignKeys('the model or checkpoint of this chat does not exist', () => {
      const row =
        id === null
          ? this.sql
              .q(
                `INSERT INTO chats (title, model_id, checkpoint_id, system_prompt, sampling, chat_template, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
              )
              .get(...values, now, now)
          : this.sql
              .q(
                `UPDATE chats SET title = ?, model_id = ?, checkpoint_id = ?, system_prompt = ?, sampling = ?,
                   chat_template = ?, updated_at = ? WHERE id = ? RETURNING *`,
              )
              .get(...values, now, id);
      return this.toChat(row as ChatRow);
    });
  }

  create(c: NewChat = {}): Chat {
    if (c.modelId != null && c.checkpointId != null) throw new StoreError('a chat uses a model or a checkpoint, not both');
    return this.write(null, {
      title: c.title ?? '',
      modelId: c.modelId ?? null,
      checkpointId: c.checkpointId ?? null,
      systemPrompt: c.systemPrompt ?? '',
      sampling: c.sampling ?? {},
      chatTemplate: c.chatTemplate ?? null,
    });
  }

  get(id: number): Chat {
    return this.toChat(this.sql.byId<ChatRow>('chats', 'chat', id));
  }

  /** Most recently active first; `search` matches the title or any message (case-insensitive for ASCII). */
  list({ search }: { search?: string } = {}): Chat[] {
    const rows = search
      ? this.sql
          .q(
            `SELECT * FROM chats WHERE title LIKE @pattern ESCAPE '\\'
               OR EXISTS (SELECT 1 FROM messages WHERE messages.chat_id = chats.id AND content LIKE @pattern ESCAPE '\\')
             ORDER BY updated_at DESC, id DESC`,
          )
          .all({ pattern: likePattern(search) })
      : this.sql.q('SELECT * FROM chats ORDER BY updated_at DESC, id DESC').all();
    return (rows as ChatRow[]).map(this.toChat);
  }

  /** Changes some settings; picking a model clears the checkpoint and vice versa. */
  update(id: number, patch: ChatPatch): Chat {
    return this.sql.tx(() => {
      if (patch.modelId != null && patch.checkpointId != null) {
        throw new StoreError('a chat uses a model or a checkpoint, not both');
      }
      const merged = { ...this.get(id), ...definedFields(patch) };
      if (patch.modelId != null) merged.checkpointId = null;
      if (patch.checkpointId != null) merged.modelId = null;
      return this.write(id, {
        title: merged.title ?? '',
        modelId: merged.modelId ?? null,
        checkpointId: merged.checkpointId ?? null,
        systemPrompt: merged.systemPrompt ?? '',
        sampling: merged.sampling ?? {},
        chatTemplate: merged.chatTemplate ?? null,
      });
    });
  }

  /** Deletes a chat with all its messages. */
  remove(id: number): void {
    this.get(id);
    this.sql.tx(() => this.sql.q('DELETE FROM chats WHERE id = ?').run(id));
  }
}
