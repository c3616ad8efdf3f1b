// The task board: the project's tasks in three columns, kept in step with the server. The
// tasks are a map by id; a change applies only if it is newer (by `version`) than what the board
// holds, so a snapshot from REST and live events can arrive in any order and the board still
// ends up with the latest of each task.

export const COLUMNS = [
  { status: "todo", name: "To do" },
  { status: "in_progress", name: "In progress" },
  { status: "done", name: "Done" },
];

/** Higher priority first, then oldest: the server's own order. */
function byPriority(a, b) {
  return b.priority - a.priority || a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id);
}

export class Board {
  /**
   * `root` holds the columns; `actions` are the writes the cards offer (each returns a promise,
   * and the board shows its failure next to the card).
   */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.tasks = new Map();
    this.cards = new Map(); // id -> card element
    this.nextId = null;
    this.dragged = null;
    for (const column of root.querySelectorAll(".column")) this.makeDropTarget(column);
  }

  /** Replaces every task (a reload). */
  replace(tasks) {
    this.tasks = new Map(tasks.map((t) => [t.id, t]));
    for (const [id, card] of this.cards) {
      if (!this.tasks.has(id)) {
        card.remove();
        this.cards.delete(id);
      }
    }
    this.render(new Set());
  }

  /** A task as the server now has it; ignored if the board has a newer version. */
  upsert(task, { flash = false, force = false } = {}) {
    const known = this.tasks.get(task.id);
    if (known && known.version > task.version && !force) return false;
    if (known && known.version === task.version && !force) return false;
    this.tasks.set(task.id, task);
    this.render(flash ? new Set([task.id]) : new Set());
    return true;
  }

  remove(id) {
    if (!this.tasks.delete(id)) return;
    const card = this.cards.get(id);
    if (card) card.remove();
    this.cards.delete(id);
    this.render(new Set());
  }

  /** Highlights the project's next ready task (or none). */
  setNext(id) {
    this.nextId = id;
    this.render(new Set());
  }

  /** The dependencies of `task` that are not done, as tasks (or ids when unknown). */
  unfinished(task) {
    return task.dependencies
      .map((id) => this.tasks.get(id) || { id, title: id.slice(0, 8), status: "todo" })
      .filter((dep) => dep.status !== "done");
  }

  render(flashing) {
    const focused = document.activeElement;
    for (const { status } of COLUMNS) {
      const column = this.root.querySelector(`.column[data-status="${status}"]`);
      const list = column.querySelector(".cards");
      const tasks = [...this.tasks.values()].filter((t) => t.status === status).sort(byPriority);
      column.querySelector(".count").textContent = `(${tasks.length})`;
      const wanted = tasks.map((task) => {
        let card = this.cards.get(task.id);
        if (!card) {
          card = this.makeCard(task.id);
          this.cards.set(task.id, card);
        }
        this.fill(card, task);
        if (flashing.has(task.id)) flash(card);
        return card;
      });
      // Move only the cards that are out of place: moving a node takes the focus out of it and
      // restarts its highlight.
      wanted.forEach((card, i) => {
        if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
      });
      while (list.children.length > wanted.length) list.lastElementChild.remove();
    }
    if (focused && focused !== document.activeElement && document.contains(focused)) {
      focused.focus();
      // The button used to move a card may be hidden in its new column: keep the focus on the
      // card for keyboard users.
      const moved = focused.closest(".card");
      if (document.activeElement !== focused && moved) moved.querySelector(".card-actions button:not([hidden])")?.focus();
    }
  }

  makeCard(id) {
    const card = el("li", { className: "card", draggable: true });
    card.dataset.id = id;
    card.innerHTML = `
      <div class="card-top">
        <span class="badge next-badge" hidden>Next up</span>
        <span class="badge blocked-badge" hidden></span>
      </div>
      <label class="field title-field"><span class="visually-hidden">Title</span>
        <input class="title" maxlength="200" autocomplete="off"></label>
      <div class="card-meta">
        <label class="field">Priority <input class="priority" type="number" min="0" max="100" inputmode="numeric"></label>
        <label class="field">Assignee <input class="assignee" maxlength="64" autocomplete="off" placeholder="nobody"></label>
      </div>
      <details class="deps">
        <summary>Dependencies <span class="dep-count"></span></summary>
        <ul class="dep-list"></ul>
        <div class="dep-add">
          <label class="field">Depends on <select class="dep-select"></select></label>
          <button type="button" class="add-dep">Add</button>
        </div>
      </details>
      <div class="card-actions">
        <button type="button" class="move-left"></button>
        <button type="button" class="move-right"></button>
        <button type="button" class="delete danger">Delete</button>
      </div>
      <p class="card-note" role="status" hidden></p>`;
    const task = () => this.tasks.get(id);
    const run = (promise) =>
      promise.then(
        () => note(card, ""),
        (err) => note(card, err.message),
      );
    const title = card.querySelector(".title");
    title.addEventListener("change", () => {
      const value = title.value.trim();
      if (value && value !== task().title) run(this.actions.update(task(), { title: value }));
    });
    const priority = card.querySelector(".priority");
    priority.addEventListener("change", () => {
      const value = Number(priority.value);
      if (priority.value !== "" && value !== task().priority) run(this.actions.update(task(), { priority: value }));
    });
    const assignee = card.querySelector(".assignee");
    assignee.addEventListener("change", () => {
      const value = assignee.value.trim() || null;
      if (value !== task().assignee) run(this.actions.update(task(), { assignee: value }));
    });
    for (const [cls, step] of [["move-left", -1], ["move-right", 1]]) {
      card.querySelector(`.${cls}`).addEventListener("click", () => {
        const to = neighbour(task().status, step);
        if (to) run(this.actions.move(task(), to.status));
      });
    }
    card.querySelector(".delete").addEventListener("click", () => run(this.actions.remove(task())));
    card.querySelector(".deps").addEventListener("toggle", (event) => {
      if (event.target.open) this.fillCandidates(card, task());
    });
    card.querySelector(".add-dep").addEventListener("click", () => {
      const dep = card.querySelector(".dep-select").value;
      if (dep) run(this.actions.addDependency(task(), dep));
    });
    card.addEventListener("dragstart", (event) => {
      this.dragged = id;
      event.dataTransfer.setData("text/plain", id);
      event.dataTransfer.effectAllowed = "move";
      card.classList.add("dragging");
    });
    card.addEventListener("dragend", () => {
      this.dragged = null;
      card.classList.remove("dragging");
    });
    return card;
  }

  makeDropTarget(column) {
    const status = column.dataset.status;
    column.addEventListener("dragover", (event) => {
      if (!this.dragged) return;
      event.preventDefault();
      column.classList.add("drop-target");
    });
    column.addEventListener("dragleave", () => column.classList.remove("drop-target"));
    column.addEventListener("drop", (event) => {
      event.preventDefault();
      column.classList.remove("drop-target");
      const id = event.dataTransfer.getData("text/plain") || this.dragged;
      const task = this.tasks.get(id);
      const card = this.cards.get(id);
      if (task && task.status !== status) {
        this.actions.move(task, status).then(
          () => note(card, ""),
          (err) => note(card, err.message),
        );
      }
    });
  }

  /** Puts `task` into its card; an input being edited keeps what the person is typing. */
  fill(card, task) {
    card.dataset.title = task.title;
    card.dataset.version = String(task.version);
    card.classList.toggle("next", task.id === this.nextId);
    card.querySelector(".next-badge").hidden = task.id !== this.nextId;
    const unfinished = this.unfinished(task);
    const blocked = card.querySelector(".blocked-badge");
    blocked.hidden = unfinished.length === 0;
    blocked.textContent = unfinished.length ? `Blocked by ${unfinished.map((d) => `“${d.title}”`).join(", ")}` : "";
    card.classList.toggle("blocked", unfinished.length > 0);
    card.querySelector(".card-top").hidden = task.id !== this.nextId && unfinished.length === 0;
    setValue(card.querySelector(".title"), task.title);
    setValue(card.querySelector(".priority"), String(task.priority));
    setValue(card.querySelector(".assignee"), task.assignee || "");
    card.querySelector(".title").setAttribute("aria-label", "Title");
    const left = neighbour(task.status, -1);
    const right = neighbour(task.status, 1);
    const moveLeft = card.querySelector(".move-left");
    const moveRight = card.querySelector(".move-right");
    moveLeft.hidden = !left;
    moveRight.hidden = !right;
    if (left) {
      moveLeft.textContent = `← ${left.name}`;
      moveLeft.setAttribute("aria-label", `Move “${task.title}” to ${left.name}`);
    }
    if (right) {
      moveRight.textContent = `${right.name} →`;
      moveRight.setAttribute("aria-label", `Move “${task.title}” to ${right.name}`);
    }
    card.querySelector(".delete").setAttribute("aria-label", `Delete “${task.title}”`);
    // Dependencies: each with a remove button; the others of the project can be added.
    card.querySelector(".dep-count").textContent = `(${task.dependencies.length})`;
    const list = card.querySelector(".dep-list");
    list.replaceChildren(
      ...task.dependencies.map((depId) => {
        const dep = this.tasks.get(depId);
        const name = dep ? dep.title : depId.slice(0, 8);
        const remove = el("button", { type: "button", className: "quiet", textContent: "Remove" });
        remove.setAttribute("aria-label", `Remove dependency on “${name}”`);
        remove.addEventListener("click", () =>
          this.actions.removeDependency(this.tasks.get(task.id), depId).then(
            () => note(card, ""),
            (err) => note(card, err.message),
          ),
        );
        const item = el("li", {}, [el("span", { textContent: `${name}${dep && dep.status === "done" ? " (done)" : ""}` }), remove]);
        return item;
      }),
    );
    if (card.querySelector(".deps").open) this.fillCandidates(card, task);
  }

  /** The tasks `task` could depend on, in its select; only while its dependencies are open (a
   * board of n cards would otherwise hold n² options). */
  fillCandidates(card, task) {
    const select = card.querySelector(".dep-select");
    if (document.activeElement === select) return;
    const chosen = select.value;
    const options = [...this.tasks.values()]
      .filter((t) => t.id !== task.id && !task.dependencies.includes(t.id))
      .sort(byPriority)
      .map((t) => el("option", { value: t.id, textContent: t.title }));
    select.replaceChildren(el("option", { value: "", textContent: "choose a task" }), ...options);
    select.value = options.some((o) => o.value === chosen) ? chosen : "";
  }

  /** `text` with every task id the board knows replaced by the task's title. */
  withTitles(text) {
    return text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, (id) =>
      this.tasks.has(id) ? `“${this.tasks.get(id).title}”` : id,
    );
  }

  /** Shows a message on a card (e.g. why an edit was not saved). */
  note(id, message) {
    const card = this.cards.get(id);
    if (card) note(card, message);
  }
}

function neighbour(status, step) {
  const index = COLUMNS.findIndex((c) => c.status === status);
  return COLUMNS[index + step];
}

function setValue(input, value) {
  if (input !== document.activeElement && input.value !== value) input.value = value;
}

function note(card, message) {
  if (!card) return;
  const p = card.querySelector(".card-note");
  p.textContent = message;
  p.hidden = !message;
}

/** A brief highlight of a card changed elsewhere. */
function flash(card) {
  card.classList.remove("flash");
  void card.offsetWidth; // restart the animation
  card.classList.add("flash");
  // Removed once done: a card moved in the DOM would otherwise replay it.
  card.addEventListener("animationend", () => card.classList.remove("flash"), { once: true });
}

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}
