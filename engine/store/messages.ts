// store.messages: the messages of a chat as a tree (an edited question or a
// regenerated answer is a new branch beside the earlier one).
import { NotFoundError } from './errors';
import { MessageTimings, parseJsonColumn, type Message, type MessagePatch, type MessageRole, type NewMessage } from './records';
import { definedFields, json, withForeignKeys, type Sql } from './sql';

interface MessageRow {
  id: number;
  chat_id: number;
  parent_id: number | null;
  role: MessageRole;
  content: string;
  content_tokens: number | null;
  prompt_tokens: number | null;
  timings: string | null;
  created_at: number;
}

export class MessagesRepo {
  constructor(private readonly sql: Sql) {}

  private toMessage = (r: MessageRow): Message => ({
    id: r.id,
    chatId: r.chat_id,
    parentId: r.parent_id,
    role: r.role,
    content: r.content,
    contentTokens: r.content_tokens,
    promptTokens: r.prompt_tokens,
    timings: r.timings === null ? null : parseJsonColumn(MessageTimings, r.timings, 'message', r.id, 'timings'),
    createdAt: r.created_at,
  });

  private touchChat(chatId: number, now: number): void {
    this.sql.q('UPDATE chats SET updated_at = ? WHERE id = ?').run(now, chatId);
  }

  /**
   * Adds a message under `parentId` (null: a first message). A second child of
   * the same parent — a regenerated answer, an edited question — is a new
   * branch; the earlier one stays.
   */
  add(m: NewMessage): Message {
    return withForeignKeys(`chat ${m.chatId} has no message ${m.parentId} (or no such chat)`, () =>
      this.sql.tx(() => {
        const now = Date.now();
        const row = this.sql
          .q(
            `INSERT INTO messages (chat_id, parent_id, role, content, content_tokens, prompt_tokens, timings, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          )
          .get(
            m.chatId,
            m.parentId,
            m.role,
            m.content,
            m.contentTokens ?? null,
            m.promptTokens ?? null,
            m.timings ? json(MessageTimings.parse(m.timings)) : null,
            now,
          ) as MessageRow;
        this.touchChat(m.chatId, now);
        return this.toMessage(row);
      }),
    );
  }

  get(id: number): Message {
    return this.toMessage(this.sql.byId<MessageRow>('messages', 'message', id));
  }

  /** Updates a message in place (an answer being streamed in, or stopped). */
  update(id: number, patch: MessagePatch): Message {
    return this.sql.tx(() => {
      const m = { ...this.get(id), ...definedFields(patch) };
      const now = Date.now();
      const row = this.sql
        .q('UPDATE messages SET content = ?, content_tokens = ?, prompt_tokens = ?, timings = ? WHERE id = ? RETURNING *')
        .get(m.content, m.contentTokens ?? null, m.promptTokens ?? null, m.timings ? json(MessageTimings.parse(m.timings)) : null, id) as MessageRow;
      this.touchChat(m.chatId, now);
      return this.toMessage(row);
    });
  }

  /** The first messages of a chat's conversations (more than one when the first message was edited). */
  roots(chatId: number): Message[] {
    return (this.sql.q('SELECT * FROM messages WHERE chat_id = ? AND parent_id IS NULL ORDER BY id').all(chatId) as MessageRow[]).map(this.toMessage);
  }

  /** The replies to a message, oldest first: siblings are alternative branches. */
  children(parentId: number): Message[] {
    const chatId = this.get(parentId).chatId;
    return (this.sql.q('SELECT * FROM messages WHERE chat_id = ? AND parent_id = ? ORDER BY id').all(chatId, parentId) as MessageRow[]).map(this.toMessage);
  }

  /**
   * The conversation from its first message down to `leafId` (default: the
   * chat's most recent message), in order.
   */
  thread(chatId: number, leafId?: number): Message[] {
    const leaf = leafId ?? (this.sql.q('SELECT max(id) FROM messages WHERE chat_id = ?').pluck(true).get(chatId) as number | null);
    if (leaf === null) return [];
    const rows = this.sql
      .q(
        `WITH RECURSIVE up(id, depth) AS (
           SELECT id, 0 FROM messages WHERE id = ? AND chat_id = ?
           UNION ALL
           SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id WHERE m.parent_id IS NOT NULL
         )
         SELECT messages.* FROM up JOIN messages ON messages.id = up.id ORDER BY up.depth DESC`,
      )
      .all(leaf, chatId) as MessageRow[];
    if (!rows.length) throw new NotFoundError(`message in chat ${chatId}`, leaf);
    return rows.map(this.toMessage);
  }

  /** Following the newest reply at every level below `id`: the leaf of the branch shown by default. */
  newestLeaf(id: number): Message {
    const { chatId } = this.get(id);
    // A reply always has a larger id than its parent, so the largest id on the way down is the leaf.
    const leaf = this.sql
      .q(
        `WITH RECURSIVE down(id) AS (
           SELECT @id
           UNION ALL
           SELECT (SELECT max(m.id) FROM messages m WHERE m.chat_id = @chatId AND m.parent_id = down.id) FROM down
           WHERE EXISTS (SELECT 1 FROM messages m WHERE m.chat_id = @chatId AND m.parent_id = down.id)
         )
         SELECT max(id) FROM down`,
      )
      .pluck(true)
      .get({ id, chatId }) as number;
    return this.get(leaf);
  }

  /** Deletes a message and every reply below it. */
  remove(id: number): void {
    const m = this.get(id);
    this.sql.tx(() => {
      this.sql.q('DELETE FROM messages WHERE id = ?').run(id);
      this.touchChat(m.chatId, Date.now());
    });
  }
}
