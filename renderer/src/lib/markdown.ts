// A model's answer as Markdown, made safe to show. The answer is untrusted
// text: HTML in it is shown as text (never parsed), images are shown as their
// alt text (nothing is fetched), links open outside the app, and DOMPurify
// keeps only the tags Markdown makes from what marked produced.
import { Marked } from 'marked';
import DOMPurify from 'dompurify';

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ENTITIES[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    image: ({ text }) => escapeHtml(text),
    // A fenced or indented block with its language and a copy button (Markdown.svelte handles the click).
    code: ({ text, lang }) => {
      const name = lang?.trim().split(/\s+/)[0];
      const label = name ? `<span class="code-lang">${escapeHtml(name)}</span>` : '';
      return `<div class="code-block">${label}<button type="button" class="code-copy" data-testid="copy-code">Copy</button><pre><code>${escapeHtml(text)}</code></pre></div>`;
    },
  },
});

const ALLOWED_TAGS = [
  ...['p', 'br', 'hr', 'strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'div', 'span', 'button'],
  ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'input'],
];
const ALLOWED_ATTR = ['href', 'title', 'class', 'type', 'start', 'align', 'checked', 'disabled', 'data-testid'];

const purifier = DOMPurify();
purifier.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
  // Task-list checkboxes only: no other input survives.
  if (node.tagName === 'INPUT' && node.getAttribute('type') !== 'checkbox') node.remove();
});

/** Safe HTML for `text` read as Markdown. */
export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false });
  return purifier.sanitize(html, { ALLOWED_TAGS, ALLOWED_ATTR: [...ALLOWED_ATTR, 'target', 'rel'], ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i });
}
