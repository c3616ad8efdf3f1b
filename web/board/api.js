// The REST API, as the board uses it. Every write of the board goes through here.

/** A failed request: the server's error code and message (shown to people as is). */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.details = error.details || null;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  /** One request; resolves with the JSON answer (null for 204), rejects with an ApiError. */
  async request(method, path, { body, version } = {}) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (version !== undefined) headers["If-Match"] = `"${version}"`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, { error: { code: "network", message: "the server cannot be reached" } });
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  me() {
    return this.request("GET", "/auth/me");
  }

  projects() {
    return this.request("GET", "/projects");
  }

  /** Every task of a project, following the pages. */
  async tasks(project) {
    const all = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ project, limit: "500" });
      if (cursor) query.set("cursor", cursor);
      const page = await this.request("GET", `/tasks?${query}`);
      all.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return all;
  }

  task(id) {
    return this.request("GET", `/tasks/${id}`);
  }

  /** The project's next ready task (the priority queue), or null when none is ready. */
  async next(project) {
    try {
      return await this.request("GET", `/tasks/next?project=${encodeURIComponent(project)}`);
    } catch (err) {
      if (err.code === "no_ready_task") return null;
      throw err;
    }
  }

  createTask(fields) {
    return this.request("POST", "/tasks", { body: fields });
  }

  /** Changes fields only if the task is still at `version` (412 `version_mismatch` if not). */
  updateTask(id, version, fields) {
    return this.request("PATCH", `/tasks/${id}`, { body: fields, version });
  }

  deleteTask(id) {
    return this.request("DELETE", `/tasks/${id}`);
  }

  addDependency(id, dependency) {
    return this.request("PUT", `/tasks/${id}/dependencies/${dependency}`);
  }

  removeDependency(id, dependency) {
    return this.request("DELETE", `/tasks/${id}/dependencies/${dependency}`);
  }

  messages(project) {
    return this.request("GET", `/projects/${encodeURIComponent(project)}/messages?limit=100`);
  }

  /** Posts to the chat; `id` makes a retry harmless. */
  postMessage(project, text, id) {
    return this.request("POST", `/projects/${encodeURIComponent(project)}/messages`, { body: { text, id } });
  }

  /** Our conversation with `user`: the latest direct messages, oldest first. */
  conversation(user) {
    return this.request("GET", `/users/${encodeURIComponent(user)}/messages?limit=100`);
  }

  /** Sends `user` a direct message; `id` makes a retry harmless. */
  postDirect(user, text, id) {
    return this.request("POST", `/users/${encodeURIComponent(user)}/messages`, { body: { text, id } });
  }

  presence(project) {
    return this.request("GET", `/projects/${encodeURIComponent(project)}/presence`);
  }
}
