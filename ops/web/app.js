// taskledger's web client: the API's JSON in plain DOM, no framework, nothing to build.
// The access token lives in memory only; the refresh token in this tab's sessionStorage, so a
// reload keeps you logged in. No token ever goes into a URL.

const $ = (id) => document.getElementById(id);
const REFRESH_KEY = "taskledger.refresh";
const STATUS = { todo: "To do", in_progress: "In progress", done: "Done" };
const EVENT = {
  TaskCreated: "Created", TaskEdited: "Edited",
  TaskStatusChanged: "Status changed", TaskDeleted: "Deleted",
};
const FIELDS = ["title", "description", "status", "priority", "due_date", "labels"];

let access = null;      // the access token
let refreshing = null;  // the refresh in flight: a spent refresh token sent twice ends the session
let refreshTimer = 0;
let me = null;
let resetToken = null;  // read from the fragment, then wiped from the address bar

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, problem) {
    super(explain(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

function explain(status, problem) {
  if (problem?.errors?.length) {
    return problem.errors.map((e) => `${e.loc.slice(1).join(".") || "request"}: ${e.msg}`).join("; ");
  }
  if (status === 429) return "Too many attempts. Please wait a little and try again.";
  return problem?.detail || problem?.title || `The server answered ${status}.`;
}

async function api(method, path, { body, headers = {}, auth = true, retried = false } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (auth && !access) await refresh();
  const sent = access;
  if (auth && sent) init.headers.Authorization = `Bearer ${sent}`;
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "The server did not answer. Check your connection." });
  }
  if (res.status === 401 && auth && !retried) {
    // Refresh once for everyone: wait for one in flight; if another call already refreshed,
    // just retry with its token.
    if (refreshing) await refreshing;
    else if (access === sent) await refresh();
    if (access) return api(method, path, { body, headers, auth, retried: true });
    const ended = "Your session has ended. Please log in again.";
    signedOut(ended);
    throw new ApiError(401, { detail: ended });
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data);
  return { data, res };
}

function keep(tokens) {
  access = tokens.access_token;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  clearTimeout(refreshTimer);
  // Renew before the access token expires, so a request seldom meets a 401.
  refreshTimer = setTimeout(refresh, Math.max(10, tokens.expires_in * 0.8) * 1000);
}

function refresh() {
  refreshing ??= (async () => {
    const token = sessionStorage.getItem(REFRESH_KEY);
    access = null;
    if (!token) return;
    try {
      const { data } = await api("POST", "/v1/auth/refresh", { body: { refresh_token: token }, auth: false });
      keep(data);
    } catch {
      sessionStorage.removeItem(REFRESH_KEY);
    }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

function forget() {
  access = null;
  me = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(REFRESH_KEY);
}

// ---------- page plumbing ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function say(text) {
  $("error").hidden = true;
  $("notice").textContent = text;
}

function fail(error) {
  $("notice").textContent = "";
  $("error").textContent = error instanceof ApiError ? error.message : String(error);
  $("error").hidden = false;
}

function show(view) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== view;
  const signedIn = view === "tasks-view" || view === "history-view";
  $("who").hidden = !signedIn;
  $(view).querySelector("h2").setAttribute("tabindex", "-1");
  $(view).querySelector("h2").focus();
}

function fields(form) {
  return Object.fromEntries(new FormData(form).entries());
}

// A form's submit: the button is disabled while the call runs; errors go to the alert region.
function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("[type=submit]");
    button.disabled = true;
    try {
      await handler(fields(form));
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  });
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—";
}

function localInput(iso) {
  // <input type=datetime-local> wants local time without a zone.
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function shown(field, value) {
  if (value === null || value === undefined || value === "") return "—";
  if (field === "status") return STATUS[value] ?? value;
  if (field === "due_date" || field.endsWith("_at")) return when(value);
  if (Array.isArray(value)) return value.length ? value.join(", ") : "—";
  return String(value);
}

// ---------- signed out ----------

function signedOut(message) {
  forget();
  show("login-view");
  if (message) say(message);
}

onSubmit($("login-form"), async ({ email, password }) => {
  const { data } = await api("POST", "/v1/auth/login", { body: { email, password }, auth: false });
  keep(data);
  $("login-form").reset();
  await signedIn();
});

onSubmit($("register-form"), async ({ email, password, display_name }) => {
  const body = { email, password };
  if (display_name.trim()) body.display_name = display_name.trim();
  await api("POST", "/v1/auth/register", { body, auth: false });
  $("register-form").reset();
  $("login-email").value = email;
  show("login-view");
  say("Your account is ready. Log in with your password.");
});

onSubmit($("forgot-form"), async ({ email }) => {
  await api("POST", "/v1/auth/forgot-password", { body: { email }, auth: false });
  say(`If ${email} has an account, a mail with a reset link is on its way.`);
});

onSubmit($("reset-form"), async ({ new_password, confirm }) => {
  if (new_password !== confirm) throw new Error("The two passwords differ.");
  if (!resetToken) throw new Error("This page was opened without a reset token. Request a new link.");
  try {
    await api("POST", "/v1/auth/reset-password", { body: { token: resetToken, new_password }, auth: false });
  } catch (error) {
    if (error.status === 400) throw new Error("This link is invalid, expired or already used. Request a new one.");
    throw error;
  }
  resetToken = null;
  $("reset-form").reset();
  history.replaceState(null, "", "/");
  show("login-view");
  say("Your password is changed. Log in with the new one.");
});

for (const link of document.querySelectorAll("[data-view]")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    say("");
    if (location.pathname !== "/") history.replaceState(null, "", "/");
    show(link.dataset.view);
  });
}

$("logout").addEventListener("click", async () => {
  try {
    await api("POST", "/v1/auth/logout", { retried: true });
  } catch {
    // Logged out on the server or not, this tab forgets its tokens.
  }
  signedOut("You are logged out.");
});

// ---------- the task list ----------

const list = { cursors: [null], page: 0, tasks: new Map() };

async function signedIn() {
  ({ data: me } = await api("GET", "/v1/users/me"));
  $("who-name").textContent = me.display_name || me.email;
  show("tasks-view");
  say("");
  await loadTasks();
}

function listQuery() {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(fields($("filter-form")))) {
    if (!value) continue;
    // A date filter means the start of that day where the reader is.
    query.set(name, name.startsWith("due_") ? new Date(`${value}T00:00`).toISOString() : value);
  }
  const cursor = list.cursors[list.page];
  if (cursor) query.set("cursor", cursor);
  return query;
}

async function loadTasks() {
  const ul = $("task-list");
  ul.setAttribute("aria-busy", "true");
  try {
    const [{ data: page }, { data: stats }] = await Promise.all([
      api("GET", `/v1/tasks?${listQuery()}`),
      api("GET", "/v1/tasks/stats"),
    ]);
    list.tasks = new Map(page.items.map((t) => [t.id, t]));
    list.cursors[list.page + 1] = page.next_cursor;
    ul.replaceChildren(...page.items.map(taskItem));
    $("empty").hidden = page.items.length > 0;
    $("prev-page").disabled = list.page === 0;
    $("next-page").disabled = !page.next_cursor;
    $("page-no").textContent = `Page ${list.page + 1}`;
    $("stats").textContent = `${stats.todo} to do · ${stats.in_progress} in progress · `
      + `${stats.done} done · ${stats.overdue} overdue`;
  } finally {
    ul.setAttribute("aria-busy", "false");
  }
}

function taskItem(task) {
  const overdue = task.due_date && task.status !== "done" && new Date(task.due_date) < new Date();
  const status = el("select", {
    "aria-label": `Status of ${task.title}`,
    onchange: (e) => write(task, { status: e.target.value }, `“${task.title}” is now ${STATUS[e.target.value]}.`),
  }, Object.entries(STATUS).map(([v, text]) => el("option", { value: v, selected: v === task.status }, text)));
  return el("li", { class: `task ${task.status}` },
    el("h3", {}, task.title),
    el("p", { class: "meta" },
      el("span", { class: `badge ${task.priority}` }, `${task.priority} priority`),
      task.due_date ? el("span", { class: overdue ? "overdue" : "" }, `due ${when(task.due_date)}${overdue ? " (overdue)" : ""}`) : null,
      task.labels.map((label) => el("span", { class: "label" }, label))),
    task.description ? el("p", { class: "description" }, task.description) : null,
    el("div", { class: "row controls" },
      status,
      el("button", { type: "button", class: "quiet", "aria-label": `Edit ${task.title}`, onclick: () => openEditor(task) }, "Edit"),
      el("button", { type: "button", class: "quiet", "aria-label": `History of ${task.title}`, onclick: () => openHistory(task) }, "History"),
      el("button", { type: "button", class: "quiet danger", "aria-label": `Delete ${task.title}`, onclick: () => remove(task) }, "Delete")));
}

// A write from the list names the version the list showed: a stale one is said plainly.
async function write(task, changes, done) {
  try {
    await api("PATCH", `/v1/tasks/${task.id}`, { body: changes, headers: { "If-Match": `"${task.version}"` } });
    say(done);
  } catch (error) {
    fail(error.status === 412 || error.status === 409
      ? `“${task.title}” was changed elsewhere since this list was loaded; nothing was saved. The list now shows the latest.`
      : error);
  }
  await loadTasks().catch(fail);
}

async function remove(task) {
  if (!confirm(`Delete “${task.title}”? Its history stays in the ledger.`)) return;
  try {
    await api("DELETE", `/v1/tasks/${task.id}`, { headers: { "If-Match": `"${task.version}"` } });
    say(`“${task.title}” is deleted.`);
  } catch (error) {
    fail(error.status === 412
      ? `“${task.title}” was changed elsewhere since this list was loaded, so it was not deleted. Look again.`
      : error);
  }
  await loadTasks().catch(fail);
}

onSubmit($("filter-form"), async () => {
  list.cursors = [null];
  list.page = 0;
  await loadTasks();
});
$("filter-form").addEventListener("reset", () => setTimeout(() => $("filter-form").requestSubmit()));
$("next-page").addEventListener("click", () => { list.page += 1; loadTasks().catch(fail); });
$("prev-page").addEventListener("click", () => { list.page -= 1; loadTasks().catch(fail); });

// ---------- create and edit ----------

let editing = null; // { base: the task as loaded, version } or null for a new task

function openEditor(task) {
  editing = task ? { base: task, version: task.version } : null;
  $("task-dialog-title").textContent = task ? `Edit “${task.title}”` : "New task";
  fill(task ?? { title: "", description: "", status: "todo", priority: "medium", due_date: null, labels: [] });
  conflict(null);
  $("task-dialog").showModal();
  $("t-title").focus();
}

function fill(task) {
  const form = $("task-form");
  form.title.value = task.title;
  form.description.value = task.description;
  form.status.value = task.status;
  form.priority.value = task.priority;
  form.due_date.value = localInput(task.due_date);
  form.labels.value = task.labels.join(", ");
}

function formTask() {
  const form = $("task-form");
  const labels = form.labels.value.split(",").map((l) => l.trim()).filter(Boolean);
  return {
    title: form.title.value,
    description: form.description.value,
    status: form.status.value,
    priority: form.priority.value,
    due_date: form.due_date.value ? new Date(form.due_date.value).toISOString() : null,
    labels: [...new Set(labels)],
  };
}

function conflict(text) {
  $("conflict").textContent = text ?? "";
  $("conflict").hidden = !text;
  $("conflict-actions").hidden = !text;
}

async function save() {
  const task = formTask();
  if (!editing) {
    await api("POST", "/v1/tasks", { body: task });
    say(`“${task.title}” is created.`);
  } else {
    const id = editing.base.id;
    try {
      await api("PATCH", `/v1/tasks/${id}`, { body: task, headers: { "If-Match": `"${editing.version}"` } });
    } catch (error) {
      if (error.status !== 412 && error.status !== 409) throw error;
      const { data: latest } = await api("GET", `/v1/tasks/${id}`);
      const theirs = FIELDS.filter((f) => JSON.stringify(latest[f]) !== JSON.stringify(editing.base[f]));
      editing.latest = latest;
      conflict(`Not saved: this task was changed elsewhere while you edited it (now version ${latest.version}`
        + `${theirs.length ? `; changed: ${theirs.join(", ")}` : ""}). Load the latest version, or save yours over it.`);
      $("conflict-reload").focus();
      return;
    }
    say(`“${task.title}” is saved.`);
  }
  $("task-dialog").close();
  await loadTasks();
}

$("task-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("task-save").disabled = true;
  try {
    await save();
  } catch (error) {
    conflict(null);
    $("conflict").textContent = error.message;
    $("conflict").hidden = false;
  } finally {
    $("task-save").disabled = false;
  }
});
$("conflict-reload").addEventListener("click", () => {
  editing = { base: editing.latest, version: editing.latest.version };
  fill(editing.base);
  conflict(null);
  say(`Loaded version ${editing.version}; your unsaved changes were set aside.`);
  $("t-title").focus();
});
$("conflict-overwrite").addEventListener("click", () => {
  editing.version = editing.latest.version;
  conflict(null);
  $("task-form").requestSubmit();
});
$("task-cancel").addEventListener("click", () => $("task-dialog").close());
$("new-task").addEventListener("click", () => openEditor(null));

// ---------- history, and the task as of any instant ----------

const past = { task: null, items: [], shown: 0, asked: 0 };

async function openHistory(task) {
  const { data } = await api("GET", `/v1/tasks/${task.id}/history`).catch((e) => { fail(e); return {}; });
  if (!data) return;
  Object.assign(past, { task, items: data.items });
  $("history-title").textContent = `History of “${task.title}”`;
  $("timeline").replaceChildren(...data.items.map(timelineEntry));
  $("asof-slider").max = String(data.items.length);
  show("history-view");
  await pick(data.items.length - 1);
}

function actor(id) {
  if (!id) return "someone";
  return me && id === me.id ? "you" : `user ${id.slice(0, 8)}`;
}

function timelineEntry(item, index) {
  const changed = Object.entries(item.changes);
  const summary = item.type === "TaskCreated"
    ? [el("li", {}, `“${item.changes.title?.new ?? ""}”`)]
    : changed.map(([field, c]) => el("li", {},
      el("span", { class: "field" }, field.replace("_", " ")), ": ",
      el("del", {}, shown(field, c.old)), " → ", el("ins", {}, shown(field, c.new))));
  return el("li", { class: "entry" },
    el("button", { type: "button", "data-index": index, onclick: () => pick(index).then(reveal) },
      el("span", { class: "what" }, `${EVENT[item.type] ?? item.type} · v${item.version}`),
      el("span", { class: "hint" }, `${when(item.at)} · by ${actor(item.actor_id)}`),
      item.type === "TaskDeleted" ? null : el("ul", { class: "changes" }, summary)));
}

// Shows the task as the event store had it at the index-th entry's instant (or at `instant`).
async function pick(index, instant = past.items[index].at) {
  past.shown = index;
  const item = past.items[index];
  $("asof-slider").value = String(index + 1);
  $("asof-slider").setAttribute("aria-valuetext", `${EVENT[item.type] ?? item.type}, ${when(item.at)}`);
  for (const button of $("timeline").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(Number(button.dataset.index) === index));
  }
  $("asof-when").dateTime = instant;
  $("asof-when").textContent = when(instant);
  $("asof-at").value = localInput(instant);
  const asked = ++past.asked; // answers to older picks that arrive late are dropped
  let state = null;
  try {
    ({ data: state } = await api("GET", `/v1/tasks/${past.task.id}?${new URLSearchParams({ as_of: instant })}`));
  } catch (error) {
    if (error.status !== 404) { fail(error); return; }
  }
  if (asked !== past.asked) return;
  $("asof-missing").hidden = Boolean(state);
  $("asof-missing").textContent = item.type === "TaskDeleted"
    ? `Deleted by ${actor(item.actor_id)}: from this instant on the task no longer exists.`
    : "The task did not exist at this instant.";
  $("asof-state").replaceChildren(...(state ? stateRows(state, item) : []));
}

// On a narrow screen the state sits above the timeline: bring it back into sight.
function reveal() {
  const heading = $("asof-title");
  if (heading.getBoundingClientRect().top < 0) heading.scrollIntoView({ block: "start" });
}

function stateRows(state, item) {
  const rows = [];
  for (const field of [...FIELDS, "version", "updated_at"]) {
    const change = item.type === "TaskCreated" ? null : item.changes[field];
    rows.push(el("dt", { class: change ? "changed" : "" }, field.replace("_", " ")),
      el("dd", { class: change ? "changed" : "" },
        change ? [el("del", { "aria-label": "was" }, shown(field, change.old)), " "] : null,
        change ? el("mark", {}, shown(field, state[field])) : shown(field, state[field])));
  }
  return rows;
}

$("asof-slider").addEventListener("input", (e) => pick(Number(e.target.value) - 1));
$("asof-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const instant = new Date($("asof-at").value).toISOString();
  // The entry in force at that instant: the last one at or before it.
  let index = 0;
  past.items.forEach((item, i) => { if (new Date(item.at) <= new Date(instant)) index = i; });
  pick(index, instant);
});
$("back").addEventListener("click", () => { show("tasks-view"); loadTasks().catch(fail); });

// ---------- start ----------

async function start() {
  // A phone shows the list first; the filters unfold on demand.
  if (matchMedia("(max-width: 40rem)").matches) $("filters").open = false;
  if (location.pathname === "/reset-password") {
    resetToken = new URLSearchParams(location.hash.slice(1)).get("token");
    // Out of the address bar and the tab's history: the token is used once, from memory.
    history.replaceState(null, "", "/reset-password");
    show(resetToken ? "reset-view" : "forgot-view");
    if (!resetToken) fail("This link holds no reset token. Ask for a new one here.");
    return;
  }
  if (sessionStorage.getItem(REFRESH_KEY)) {
    await refresh();
    if (access) return signedIn();
  }
  show("login-view");
}

start().catch(fail);
