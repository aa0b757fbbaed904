// The labeling page: keyboard-first, the next images prefetched so each answer shows the
// next one at once. Everything that comes from the API is untrusted text: it is only ever
// put into the page with textContent, never as HTML.
"use strict";

(() => {
  const KEY_STORE = "hone.labeling.key";
  const settings = document.body.dataset;
  const UNDO_SECONDS = Number(settings.undoSeconds) || 60;
  const PREFETCH = Math.max(1, Number(settings.prefetch) || 4);
  const RETRIES = 3;

  const $ = (id) => document.getElementById(id);
  const el = {
    signIn: $("sign-in"), keyForm: $("key-form"), keyInput: $("api-key"), signOut: $("sign-out"),
    work: $("work"), image: $("image"), empty: $("empty"), about: $("about"), guess: $("guess"),
    topK: $("top-k"), reasons: $("reasons"), meta: $("meta"), choices: $("choices"),
    ambiguous: $("ambiguous"), skip: $("skip"), undo: $("undo"), progress: $("progress"),
    status: $("status"), alert: $("alert"),
  };

  let key = sessionStorage.getItem(KEY_STORE);
  let classes = [];
  let current = null; // {task, url, ready, shownAt}
  let queue = []; // prefetched items, in order
  const answered = new Set(); // task ids answered here, so a racing claim does not bring them back
  let writes = Promise.resolve(); // answers and undos are sent in the order they were made
  let undoing = false;
  let claiming = null;
  let leaseSeconds = 300;
  let refreshTimer = null;
  let statsTimer = null;

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // --- talking to the API -----------------------------------------------------------------

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16)); // plain-HTTP pages lack randomUUID
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, body, headers = {}) {
    const init = {
      method,
      cache: "no-store",
      headers: { Authorization: `Bearer ${key}`, ...headers },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.ok) return response;
    let code = "http_error";
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const refusal = await response.json();
      code = refusal.error.code;
      message = refusal.error.message;
    } catch (_) {
      // not our error body; keep the status text
    }
    if (response.status === 401) signOut("The key was refused. Enter a valid labeler key.");
    throw new ApiError(response.status, code, message);
  }

  // A write is retried with the same Idempotency-Key, so a lost response never answers twice.
  async function write(method, path, body) {
    const idempotencyKey = newKey();
    for (let attempt = 1; ; attempt++) {
      try {
        return await api(method, path, body, { "Idempotency-Key": idempotencyKey });
      } catch (error) {
        const retriable =
          !(error instanceof ApiError) || error.status === 429 || error.status >= 500;
        if (!retriable || attempt >= RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 400 * attempt));
      }
    }
  }

  // --- the queue of tasks -------------------------------------------------------------------

  function load(task) {
    const item = { task, url: null, ready: null, loaded: false, shownAt: 0 };
    item.ready = (async () => {
      const response = await api("GET", task.image.url);
      item.url = URL.createObjectURL(await response.blob());
      const probe = new Image();
      probe.src = item.url;
      await probe.decode(); // decoded now, so showing it later costs nothing
      item.loaded = true;
      return item;
    })();
    item.ready.catch(() => {}); // reported when the item is shown
    return item;
  }

  function forget(item) {
    if (item && item.url) URL.revokeObjectURL(item.url);
  }

  function topUp() {
    if (claiming || !key) return claiming;
    claiming = (async () => {
      try {
        const response = await api("POST", "/v1/tasks/claim", { count: PREFETCH });
        const claimed = await response.json();
        leaseSeconds = claimed.lease_seconds;
        const known = new Set(queue.map((item) => item.task.task_id));
        if (current) known.add(current.task.task_id);
        for (const task of claimed.tasks) {
          if (!known.has(task.task_id) && !answered.has(task.task_id)) queue.push(load(task));
        }
        if (!current) showNext();
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) {
          report(`Could not fetch new images: ${error.message}`);
        }
      } finally {
        claiming = null;
      }
    })();
    return claiming;
  }

  // --- showing a task -----------------------------------------------------------------------

  function showNext() {
    show(queue.shift() || null);
  }

  async function show(item) {
    current = item;
    clearChildren(el.topK);
    clearChildren(el.reasons);
    el.about.hidden = !item;
    if (!item) {
      el.image.hidden = true;
      delete el.image.dataset.taskId;
      el.empty.hidden = false;
      el.guess.textContent = "";
      el.meta.textContent = "";
      return;
    }
    el.empty.hidden = true;
    if (!item.loaded) {
      // Never leave the previous image up beside this task's guess while it loads.
      el.image.hidden = true;
      delete el.image.dataset.taskId;
    }
    const { task } = item;
    const prediction = task.prediction;
    el.guess.textContent = prediction
      ? `${prediction.label} (${percent(prediction.confidence)})`
      : "No prediction";
    for (const entry of prediction ? prediction.top_k : []) {
      appendText(el.topK, "li", `${entry.label}: ${percent(entry.probability)}`);
    }
    for (const reason of task.reasons) {
      const detail = reason.detail ? ` — ${reason.detail}` : "";
      appendText(el.reasons, "li", `${reason.strategy} (${reason.score.toFixed(2)})${detail}`);
    }
    const parts = [];
    if (task.outside_budget) parts.push("flagged by a user");
    if (task.camera_id) parts.push(`camera ${task.camera_id}`);
    if (task.model_version) parts.push(`model ${task.model_version}`);
    el.meta.textContent = parts.join(" · ");
    try {
      await item.ready;
    } catch (error) {
      if (current === item) {
        report(`This image could not be loaded (${error.message}); press s to skip it.`);
      }
      return;
    }
    if (current !== item) return; // answered before its image arrived
    el.image.src = item.url;
    el.image.dataset.taskId = task.task_id; // lets tests and tools tell which task is shown
    el.image.alt = `Image to label${prediction ? `; the model says ${prediction.label}` : ""}`;
    el.image.hidden = false;
    item.shownAt = performance.now();
  }

  // --- answering ----------------------------------------------------------------------------

  function answer(verdict, label) {
    if (!current || undoing) return;
    const item = current;
    const elapsed = item.shownAt ? Math.round(performance.now() - item.shownAt) : null;
    answered.add(item.task.task_id);
    showNext(); // at once: the next image is already decoded
    const body = { verdict };
    if (label !== undefined) body.label = label;
    if (elapsed !== null) body.elapsed_ms = Math.min(elapsed, 3600000);
    enqueue(async () => {
      try {
        await write("POST", `/v1/tasks/${item.task.task_id}/answer`, body);
        say(`Saved: ${describe(verdict, label)}.`);
        report("");
      } catch (error) {
        report(`Your answer "${describe(verdict, label)}" was not saved: ${error.message}`);
      } finally {
        forget(item);
        scheduleStats();
        topUp();
      }
    });
  }

  function undo() {
    if (undoing) return;
    undoing = true;
    enqueue(async () => {
      try {
        const response = await write("POST", "/v1/answers/undo");
        const result = await response.json();
        answered.delete(result.undone.task_id);
        if (result.task) {
          if (current) queue.unshift(current);
          queue = queue.filter((item) => item.task.task_id !== result.task.task_id);
          await show(load(result.task));
        }
        say(`Undone: ${describe(result.undone.verdict, result.undone.label)}. The image is back.`);
        report("");
      } catch (error) {
        report(`Nothing undone: ${error.message}`);
      } finally {
        undoing = false;
        scheduleStats();
      }
    });
  }

  function enqueue(job) {
    writes = writes.then(job, job);
    return writes;
  }

  function describe(verdict, label) {
    return verdict === "label" ? label : verdict === "ambiguous" ? "ambiguous" : "skipped";
  }

  // --- progress -----------------------------------------------------------------------------

  function scheduleStats() {
    if (statsTimer) return;
    statsTimer = setTimeout(async () => {
      statsTimer = null;
      try {
        const stats = await (await api("GET", "/v1/stats/me")).json();
        const me = stats.me;
        el.progress.textContent =
          `${stats.queue.waiting} waiting in the queue · you, last ${stats.window_hours} h: ` +
          `${me.answers} answers (${me.labels} labelled, ${me.ambiguous} ambiguous, ` +
          `${me.skips} skipped), ${me.last_hour} in the last hour`;
      } catch (_) {
        // progress is a nicety; the next answer refreshes it
      }
    }, 300);
  }

  // --- page plumbing ------------------------------------------------------------------------

  function say(message) {
    el.status.textContent = message;
  }

  function report(message) {
    el.alert.textContent = message;
  }

  function percent(p) {
    return `${Math.round(p * 100)}%`;
  }

  function clearChildren(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function appendText(parent, tag, text) {
    const node = document.createElement(tag);
    node.textContent = text;
    parent.appendChild(node);
    return node;
  }

  function shortcut(index) {
    if (index < 9) return String(index + 1);
    return index === 9 ? "0" : null;
  }

  function renderClasses() {
    clearChildren(el.choices);
    classes.forEach((name, index) => {
      const button = document.createElement("button");
      button.type = "button";
      const key = shortcut(index);
      if (key !== null) {
        button.setAttribute("aria-keyshortcuts", key);
        appendText(button, "kbd", key);
        button.appendChild(document.createTextNode(" "));
      }
      appendText(button, "span", name);
      button.addEventListener("click", () => answer("label", name));
      el.choices.appendChild(button);
    });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target instanceof HTMLInputElement || el.work.hidden) return;
    const k = event.key.toLowerCase();
    let handled = true;
    if (/^[0-9]$/.test(k)) {
      const index = k === "0" ? 9 : Number(k) - 1;
      if (index < classes.length) answer("label", classes[index]);
    } else if (k === "a") {
      answer("ambiguous");
    } else if (k === "s") {
      answer("skip");
    } else if (k === "z") {
      undo();
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    key = null;
    clearInterval(refreshTimer);
    queue.forEach(forget);
    forget(current);
    queue = [];
    current = null;
    el.work.hidden = true;
    el.signOut.hidden = true;
    el.signIn.hidden = false;
    el.progress.textContent = "";
    report(message || "");
    el.keyInput.focus();
  }

  async function start() {
    el.signIn.hidden = true;
    el.signOut.hidden = false;
    say("Loading…");
    try {
      classes = (await (await api("GET", "/v1/classes")).json()).classes;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        report(`Cannot start: ${error.message}`);
      }
      return;
    }
    renderClasses();
    el.work.hidden = false;
    el.work.focus();
    await topUp();
    say(current ? "Ready." : "No image waiting.");
    scheduleStats();
    // Renews the leases of the prefetched tasks and picks up new ones while the queue is empty.
    refreshTimer = setInterval(topUp, Math.min(30, leaseSeconds / 3) * 1000);
  }

  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = el.keyInput.value.trim();
    if (!value) return;
    key = value;
    sessionStorage.setItem(KEY_STORE, key);
    el.keyInput.value = "";
    report("");
    start();
  });
  el.signOut.addEventListener("click", () => signOut("Signed out."));
  el.ambiguous.addEventListener("click", () => answer("ambiguous"));
  el.skip.addEventListener("click", () => answer("skip"));
  el.undo.addEventListener("click", undo);
  document.addEventListener("keydown", onKey);

  if (key) start();
  else el.keyInput.focus();
})();
