// People: who is viewing the project, its chat with "X is typing", and toasts for the user's
// own notifications.

import { el } from "./board.js";

/** Two letters for a user id: "alice" -> "AL", "bob.smith" -> "BS". */
export function initials(user) {
  const parts = user.split(/[._@-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : user.slice(0, 2);
  return letters.toUpperCase();
}

export class PresenceList {
  /** `onPick(user)`: someone other than us was clicked (to open a conversation with them). */
  constructor(list, onPick = () => {}) {
    this.list = list;
    this.onPick = onPick;
    this.unread = new Map();
    this.present = [];
    this.me = null;
  }

  /** `present`: [{user, connections}] as the server reports it. */
  show(present, me) {
    this.present = present;
    this.me = me;
    const sorted = [...present].sort((a, b) => (a.user === me ? -1 : b.user === me ? 1 : a.user.localeCompare(b.user)));
    this.list.replaceChildren(
      ...sorted.map(({ user, connections }) => {
        const tabs = connections === 1 ? "1 tab" : `${connections} tabs`;
        const unread = this.unread.get(user) || 0;
        const label = user === me ? `${user} (you), ${tabs}` : `Message ${user} (${tabs}${unread ? `, ${unread} unread` : ""})`;
        const face = [
          el("span", { className: "avatar", textContent: initials(user) }),
          el("span", { className: "tabs", textContent: String(connections) }),
        ];
        if (unread) face.push(el("span", { className: "unread", textContent: String(unread) }));
        for (const part of face) part.setAttribute("aria-hidden", "true");
        // Everyone else is a button: clicking opens a conversation.
        // The name is the hidden text (the visible letters are aria-hidden), not an aria-label
        // that would differ from what is seen.
        const named = [...face, el("span", { className: "visually-hidden", textContent: label })];
        const body =
          user === me ? named : [el("button", { type: "button", className: "person-button", title: label }, named)];
        const item = el("li", { className: "person", title: `${user}${user === me ? " (you)" : ""}: ${tabs}` }, body);
        item.querySelector("button")?.addEventListener("click", () => this.onPick(user));
        item.dataset.user = user;
        item.dataset.connections = String(connections);
        item.dataset.unread = String(unread);
        return item;
      }),
    );
  }

  /** New unread counts (user -> count): the badges follow. */
  setUnread(unread) {
    this.unread = new Map(unread);
    if (this.me !== null) this.show(this.present, this.me);
  }
}

/** How long "X is typing" stays without a new typing frame. */
const TYPING_SHOWN_MS = 3000;

export class Chat {
  /**
   * `send(text)` posts a message; `typing()` tells the room (best effort).
   */
  constructor({ list, typingLine, form, input }, { send, typing }) {
    this.list = list;
    this.typingLine = typingLine;
    this.seen = new Set(); // offsets already shown
    this.typists = new Map(); // user -> timer
    this.lastTyping = 0;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      try {
        await send(text);
      } catch (err) {
        input.value = text;
        this.system(`Not sent: ${err.message}`);
      }
    });
    input.addEventListener("input", () => {
      // At most one typing frame every 2 s, and only while there is something typed.
      if (!input.value || Date.now() - this.lastTyping < 2000) return;
      this.lastTyping = Date.now();
      typing();
    });
  }

  clear() {
    this.seen.clear();
    this.list.replaceChildren();
    for (const timer of this.typists.values()) clearTimeout(timer);
    this.typists.clear();
    this.renderTyping();
  }

  /** A logged `message.created` event (from the history or live); each offset shown once. */
  add(event, me) {
    if (this.seen.has(event.offset)) return;
    this.seen.add(event.offset);
    const { user, text } = event.data;
    const time = new Date(event.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const item = el("li", { className: user === me ? "message mine" : "message" }, [
      el("span", { className: "author", textContent: user }),
      el("time", { dateTime: event.at, textContent: time }),
      el("p", { textContent: text }),
    ]);
    item.dataset.offset = String(event.offset);
    // Keep offset order even if a live message overtook the history.
    const after = [...this.list.children].find((li) => Number(li.dataset.offset) > event.offset);
    this.list.insertBefore(item, after || null);
    this.list.scrollTop = this.list.scrollHeight;
    this.stoppedTyping(user);
  }

  system(text) {
    this.list.append(el("li", { className: "message system", textContent: text }));
  }

  /** Someone else is typing. */
  typing(user) {
    clearTimeout(this.typists.get(user));
    this.typists.set(
      user,
      setTimeout(() => this.stoppedTyping(user), TYPING_SHOWN_MS),
    );
    this.renderTyping();
  }

  stoppedTyping(user) {
    if (!this.typists.has(user)) return;
    clearTimeout(this.typists.get(user));
    this.typists.delete(user);
    this.renderTyping();
  }

  renderTyping() {
    const users = [...this.typists.keys()];
    this.typingLine.textContent =
      users.length === 0 ? "" : users.length === 1 ? `${users[0]} is typing…` : `${users.join(", ")} are typing…`;
  }
}

/** Short notifications in a corner; each goes after a few seconds or when dismissed. */
export class Toasts {
  constructor(region) {
    this.region = region;
  }

  show(text) {
    const close = el("button", { type: "button", className: "quiet", textContent: "Dismiss" });
    const toast = el("div", { className: "toast" }, [el("p", { textContent: text }), close]);
    close.addEventListener("click", () => toast.remove());
    this.region.append(toast);
    setTimeout(() => toast.remove(), 8000);
  }
}
