// The board's entry point: signs in, picks a project, loads it over REST and keeps it live with
// taskflow.js. Every write goes through the REST API; every change, ours or anyone's, comes back
// as an event and is applied by version, so the board converges on the server's state.

import { connect } from "/taskflow.js";
import { Api } from "./api.js";
import { Board } from "./board.js";
import { Chat, PresenceList, Toasts } from "./people.js";
import { Conversations } from "./direct.js";
import { ConnectionIndicator } from "./status.js";
import { AdminView } from "./admin.js";

const TOKEN_KEY = "taskflow.token";
const PROJECT_KEY = "taskflow.project";
/** How often the presence list is refreshed besides on join and leave frames. */
const PRESENCE_POLL_MS = 5000;
const $ = (id) => document.getElementById(id);

/** The token from the sign-in link's fragment, moved to session storage and out of the URL. */
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromLink = fragment.get("token");
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showSignIn(reason) {
  $("workspace").hidden = true;
  $("signin").hidden = false;
  if (reason) $("signin-reason").textContent = reason;
  $("connection").dataset.state = "signed-out";
  $("connection").querySelector(".connection-label").textContent = "Signed out";
}

function uniqueId() {
  return `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

class App {
  constructor(token, me) {
    this.api = new Api(token);
    this.token = token;
    this.me = me;
    this.project = null;
    this.client = null;
    this.loading = 0; // reloads in flight; events wait in `buffer` meanwhile
    this.buffer = [];
    this.reloadGeneration = 0;
    this.reloads = 0; // how many times the state was loaded from REST (the first load included)
    this.indicator = new ConnectionIndicator($("connection"));
    this.presence = new PresenceList($("presence"), (user) => this.conversations.open(user));
    this.toasts = new Toasts($("toasts"));
    this.conversations = new Conversations(
      {
        panel: $("direct"),
        title: $("direct-title"),
        list: $("direct-messages"),
        form: $("direct-form"),
        input: $("direct-text"),
        close: $("direct-close"),
        inbox: $("inbox"),
        badge: $("inbox-unread"),
      },
      { api: this.api, me: me.user, uniqueId, onUnread: (unread) => this.presence.setUnread(unread) },
    );
    this.board = new Board($("board"), this.actions());
    this.chat = new Chat(
      { list: $("messages"), typingLine: $("typing"), form: $("chat-form"), input: $("chat-text") },
      {
        send: (text) => this.api.postMessage(this.project, text, uniqueId()),
        typing: () => {
          if (this.client && this.client.transport === "websocket") {
            this.client.command({ type: "typing", room: this.room() }).catch(() => {});
          }
        },
      },
    );
    this.nextTimer = null;
    this.presenceTimer = null;
    this.writing = new Set(); // ids of tasks this page is changing right now
  }

  room() {
    return `project:${this.project}`;
  }

  /** The writes the cards offer. Each applies the server's answer at once. */
  actions() {
    const apply = (task) => this.board.upsert(task);
    const stale = async (task, err) => {
      if (err.code !== "version_mismatch") throw err;
      // Someone changed the task meanwhile: show theirs, and say that ours was not saved.
      const fresh = await this.api.task(task.id);
      this.board.upsert(fresh, { force: true, flash: true });
      throw new Error("This task was changed elsewhere: it has been reloaded, and your edit was not saved.");
    };
    const write = async (task, fields) => {
      // Our own change's event may arrive before the answer: it is not highlighted.
      this.writing.add(task.id);
      try {
        apply(await this.api.updateTask(task.id, task.version, fields));
      } catch (err) {
        await stale(task, err);
      } finally {
        this.writing.delete(task.id);
        this.refreshNext();
      }
    };
    return {
      update: (task, fields) => write(task, fields),
      move: (task, status) => write(task, { status }),
      remove: async (task) => {
        try {
          await this.api.deleteTask(task.id);
        } catch (err) {
          if (err.code === "has_dependents") {
            const names = (err.details?.dependents || []).map((id) => this.board.withTitles(id));
            err.message = `${names.join(", ")} ${names.length === 1 ? "depends" : "depend"} on this task: remove ${names.length === 1 ? "that dependency" : "those dependencies"} first.`;
          }
          throw err;
        }
        this.board.remove(task.id);
        this.refreshNext();
      },
      addDependency: async (task, dep) => {
        this.writing.add(task.id);
        try {
          apply(await this.api.addDependency(task.id, dep));
        } catch (err) {
          // The server's message, with the tasks of a refused cycle named by their titles.
          if (err.code === "dependency_cycle") err.message = this.board.withTitles(err.message);
          throw err;
        } finally {
          this.writing.delete(task.id);
          this.refreshNext();
        }
      },
      removeDependency: async (task, dep) => {
        this.writing.add(task.id);
        try {
          apply(await this.api.removeDependency(task.id, dep));
        } finally {
          this.writing.delete(task.id);
          this.refreshNext();
        }
      },
    };
  }

  async start(projects) {
    $("signin").hidden = true;
    $("workspace").hidden = false;
    $("me").textContent = this.me.role === "admin" ? `${this.me.user} (admin)` : this.me.user;
    const select = $("project");
    select.replaceChildren(
      ...projects.map((p) => {
        const option = document.createElement("option");
        option.value = p.id;
        option.textContent = p.name === p.id ? p.id : `${p.name} (${p.id})`;
        return option;
      }),
    );
    select.disabled = projects.length === 0;
    select.addEventListener("change", () => this.open(select.value));
    $("new-task").addEventListener("submit", (event) => this.create(event));
    if (this.me.role === "admin") new AdminView($("admin"), this.token).start();
    const wanted = sessionStorage.getItem(PROJECT_KEY);
    const first = projects.find((p) => p.id === wanted) || projects[0];
    if (!first) {
      this.notice("You are not a member of any project yet. Ask a member or the admin to add you.");
      return;
    }
    select.value = first.id;
    this.open(first.id);
  }

  /** Switches to a project: a new connection to its room (and ours), then a fresh load. */
  open(project) {
    if (this.client) this.client.close();
    this.project = project;
    sessionStorage.setItem(PROJECT_KEY, project);
    this.board.replace([]);
    this.chat.clear();
    this.presence.show([], this.me.user);
    this.notice("");
    const room = this.room();
    this.client = connect({
      token: this.token,
      rooms: [room, `user:${this.me.user}`],
      // A page someone is looking at: after an outage, retry at least every 10 s (the library's
      // default ceiling, 30 s, suits unattended clients better).
      backoffCap: 10000,
      onState: (state, info) => {
        this.indicator.show(state, info);
        if (state === "live" || state === "degraded") this.refreshPresence();
      },
      onEvent: (frame) => this.receive(frame),
      onFrame: (frame) => this.ephemeral(frame),
      // After the first subscription (its stream starts "now", so a snapshot taken before it
      // could miss what happened in between) and after any resume that could not be honoured:
      // load from REST. Other resumes replay what was missed.
      onRecovery: ({ room: r, recovered }) => {
        if (r !== room) return;
        if (!recovered || !this.subscribedOnce) {
          this.subscribedOnce = true;
          this.reload();
        }
      },
      onTokenExpired: () => {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignIn("Your session expired. Open a new sign-in link or paste a fresh token.");
      },
    });
    this.subscribedOnce = false;
    // Shown at once; loaded again once subscribed (see onRecovery).
    this.reload();
    this.pollPresence();
  }

  /** Loads the project's tasks and chat; events arriving meanwhile are applied after. */
  async reload() {
    this.reloads += 1;
    const generation = ++this.reloadGeneration;
    const project = this.project;
    this.loading += 1;
    try {
      const [tasks, messages] = await Promise.all([this.api.tasks(project), this.api.messages(project)]);
      if (generation !== this.reloadGeneration || project !== this.project) return;
      this.board.replace(tasks);
      this.chat.clear();
      for (const message of messages) this.chat.add(message, this.me.user);
    } catch (err) {
      if (project === this.project) this.notice(`Could not load the project: ${err.message}`);
    } finally {
      this.loading -= 1;
      if (this.loading === 0) {
        const waiting = this.buffer;
        this.buffer = [];
        for (const frame of waiting) this.apply(frame, false);
      }
    }
    this.refreshNext();
  }

  receive(frame) {
    if (this.loading > 0) this.buffer.push(frame);
    else this.apply(frame, true);
  }

  /** A logged event: a task change, a chat message, or a notification for us. */
  apply(frame, flash) {
    if (frame.room === `user:${this.me.user}`) {
      if (frame.event === "task.assigned") this.toasts.show(`Assigned to you: “${frame.data.title}” in ${frame.data.project_id}`);
      if (frame.event === "tasks.imported") this.toasts.show(`An import assigned ${frame.data.count} tasks to you`);
      if (frame.event === "task.unblocked") {
        const blocker = this.board.withTitles(frame.data.dependency_id);
        this.toasts.show(`Ready to start: “${frame.data.task.title}” (${blocker} is done)`);
      }
      if (frame.event === "message.direct") {
        const notification = this.conversations.receive(frame);
        if (notification) this.toasts.show(notification);
      }
      return;
    }
    if (frame.room !== this.room()) return;
    switch (frame.event) {
      case "tasks.imported":
        // A large import logs this one event instead of a task.created per task: load the
        // project again (events after it in the room are applied on top, as after any reload).
        this.toasts.show(`${frame.data.count} tasks imported`);
        this.reload();
        return;
      case "task.created":
      case "task.updated":
      case "task.moved":
      case "task.assigned":
        this.board.upsert(frame.data, { flash: flash && !this.writing.has(frame.data.id) });
        break;
      case "task.deleted":
        this.board.remove(frame.data.id);
        break;
      case "dependency.added":
      case "dependency.removed":
        this.board.upsert(frame.data.task, { flash: flash && !this.writing.has(frame.data.task.id) });
        break;
      case "message.created":
        this.chat.add(frame, this.me.user);
        return;
      default:
        return;
    }
    this.refreshNext();
  }

  /** Ephemeral frames: presence changes and typing. */
  ephemeral(frame) {
    if (frame.room !== this.room()) return;
    if (frame.type === "presence.joined" || frame.type === "presence.left") this.refreshPresence();
    else if (frame.type === "typing" && frame.user !== this.me.user) this.chat.typing(frame.user);
  }

  /** The next ready task, asked of the server (its priority queue), once per burst of changes. */
  refreshNext() {
    clearTimeout(this.nextTimer);
    this.nextTimer = setTimeout(async () => {
      try {
        const next = await this.api.next(this.project);
        this.board.setNext(next ? next.id : null);
      } catch {
        // Offline: the highlight stays until the next change.
      }
    }, 100);
  }

  /** The hub tells when a user's first tab joins and last tab leaves, not when tab counts change
   * in between, so the list is also refreshed now and then while the page is visible. */
  pollPresence() {
    clearInterval(this.presencePoll);
    this.presencePoll = setInterval(() => {
      if (document.visibilityState === "visible" && ["live", "degraded"].includes(this.client?.state)) this.refreshPresence();
    }, PRESENCE_POLL_MS);
  }

  refreshPresence() {
    clearTimeout(this.presenceTimer);
    this.presenceTimer = setTimeout(async () => {
      try {
        const { present } = await this.api.presence(this.project);
        this.presence.show(present, this.me.user);
      } catch {
        // Offline: the list is refreshed when the connection is back.
      }
    }, 100);
  }

  async create(event) {
    event.preventDefault();
    const title = $("new-title");
    const priority = $("new-priority");
    try {
      const task = await this.api.createTask({
        title: title.value,
        priority: Number(priority.value || 0),
        project_id: this.project,
      });
      this.board.upsert(task);
      title.value = "";
      this.notice("");
      this.refreshNext();
    } catch (err) {
      this.notice(err.message);
    }
  }

  notice(text) {
    const notice = $("notice");
    notice.textContent = text;
    notice.hidden = !text;
  }
}

async function main() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("signin-token").value.trim());
    location.reload();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  const token = takeToken();
  if (!token) return showSignIn();
  const api = new Api(token);
  let me;
  let projects;
  try {
    me = await api.me();
    projects = await api.projects();
  } catch (err) {
    if (err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showSignIn("That token is not valid (or has expired). Open a new sign-in link or paste a token.");
    }
    return showSignIn(`The server cannot be reached: ${err.message}. Reload to try again.`);
  }
  window.taskflowBoard = new App(token, me);
  await window.taskflowBoard.start(projects);
}

main();
