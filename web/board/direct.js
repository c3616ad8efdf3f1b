// Direct messages: one conversation at a time in the side panel, opened by clicking a person in
// the presence list (or the inbox button, which opens the latest unread conversation), and an
// unread count per person for messages that arrive while their conversation is closed. Messages
// are `message.direct` events in our own `user:` room, so they arrive live on any transport and
// resume like every event; a conversation's history comes from GET /users/{id}/messages.

import { el } from "./board.js";

export class Conversations {
  /**
   * `api` sends and loads; `me` is our user id; `onUnread(counts)` is told of every change of the
   * unread counts (a Map user -> count), for the presence list's badges.
   */
  constructor({ panel, title, list, form, input, close, inbox, badge }, { api, me, uniqueId, onUnread }) {
    Object.assign(this, { panel, title, list, input, inbox, badge, api, me, uniqueId, onUnread });
    this.peer = null; // whose conversation is open
    this.seen = new Set(); // offsets (in our room) shown in the open conversation
    this.unread = new Map(); // user -> count of messages not yet seen
    this.latestUnread = null; // who wrote last among the unread
    form.addEventListener("submit", (event) => this.submit(event));
    close.addEventListener("click", () => this.close());
    inbox.addEventListener("click", () => {
      if (this.latestUnread) this.open(this.latestUnread);
    });
    this.renderUnread();
  }

  /** Opens the conversation with `peer`: its history, then live messages; their unread go. */
  async open(peer) {
    if (peer === this.me) return;
    this.peer = peer;
    this.seen.clear();
    this.list.replaceChildren();
    this.title.textContent = `Messages with ${peer}`;
    this.panel.hidden = false;
    this.panel.dataset.peer = peer;
    this.markRead(peer);
    this.input.focus();
    try {
      const history = await this.api.conversation(peer);
      if (this.peer !== peer) return;
      for (const event of history) this.show(event);
    } catch (err) {
      if (this.peer === peer) this.system(`Could not load the conversation: ${err.message}`);
    }
  }

  close() {
    this.peer = null;
    this.panel.hidden = true;
    delete this.panel.dataset.peer;
  }

  /**
   * A `message.direct` event from our room. Returns the text of a notification to show when it
   * is someone else's message and their conversation is not open; `null` otherwise.
   */
  receive(event) {
    const { from, to, text } = event.data;
    const peer = from === this.me ? to : from;
    if (peer === this.peer) {
      this.show(event);
      return null;
    }
    if (from === this.me) return null; // sent from another of our tabs
    this.unread.set(from, (this.unread.get(from) || 0) + 1);
    this.latestUnread = from;
    this.renderUnread();
    return `${from}: ${text}`;
  }

  markRead(peer) {
    if (!this.unread.delete(peer)) return;
    if (this.latestUnread === peer) this.latestUnread = [...this.unread.keys()].pop() || null;
    this.renderUnread();
  }

  renderUnread() {
    const total = [...this.unread.values()].reduce((a, b) => a + b, 0);
    this.badge.textContent = String(total);
    this.badge.hidden = total === 0;
    this.inbox.disabled = total === 0;
    this.inbox.setAttribute("aria-label", total === 0 ? "Direct messages: none unread" : `Direct messages: ${total} unread`);
    this.inbox.dataset.unread = String(total);
    this.onUnread(this.unread);
  }

  /** One message in the open conversation, in offset order, each once. */
  show(event) {
    if (this.seen.has(event.offset)) return;
    this.seen.add(event.offset);
    const { from, text } = event.data;
    const time = new Date(event.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const item = el("li", { className: from === this.me ? "message mine" : "message" }, [
      el("span", { className: "author", textContent: from === this.me ? "you" : from }),
      el("time", { dateTime: event.at, textContent: time }),
      el("p", { textContent: text }),
    ]);
    item.dataset.offset = String(event.offset);
    const after = [...this.list.children].find((li) => Number(li.dataset.offset) > event.offset);
    this.list.insertBefore(item, after || null);
    this.list.scrollTop = this.list.scrollHeight;
  }

  system(text) {
    this.list.append(el("li", { className: "message system", textContent: text }));
  }

  async submit(event) {
    event.preventDefault();
    const text = this.input.value.trim();
    if (!text || !this.peer) return;
    this.input.value = "";
    try {
      // Shown when its event arrives, like everyone else's; the answer shows it at once.
      this.show(await this.api.postDirect(this.peer, text, this.uniqueId()));
    } catch (err) {
      this.input.value = text;
      this.system(`Not sent: ${err.message}`);
    }
  }
}
