// Shared by the views: DOM building, number and time formats, the API client with the admin
// token, dialogs and toasts. No framework: every text goes in through textContent.

export const POLL_MS = 2000;
const TOKEN_KEY = "dclaw.adminToken";
let clockOffsetMs = 0; // the service's clock minus ours, from the Date header

// -- DOM ---------------------------------------------------------------------------------------
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/** An empty state: what is missing and what to do next. */
export function empty(title, ...what) {
  return h("div", { class: "empty" }, h("strong", {}, title), " ", ...what);
}

// -- formats -----------------------------------------------------------------------------------
export function num(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).replace("-", "−");
}

export function pct(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)} %`;
}

export function serverNow() {
  return Date.now() + clockOffsetMs;
}

export function ageSeconds(iso) {
  return iso ? Math.max(0, (serverNow() - Date.parse(iso)) / 1000) : null;
}

export function ago(iso) {
  const s = ageSeconds(iso);
  if (s === null) return "never";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A relative time that the page keeps current (see tickAges). */
export function age(iso, freshness = null) {
  const el = h("span", { class: "age", title: iso ? new Date(iso).toLocaleString() : "" });
  el.dataset.time = iso || "";
  if (freshness) el.dataset.freshness = freshness;
  paintAge(el);
  return el;
}

function paintAge(el) {
  const iso = el.dataset.time || null;
  el.textContent = ago(iso);
  if (el.dataset.freshness) {
    const s = ageSeconds(iso);
    el.classList.toggle("fresh", s !== null && s < 15);
    el.classList.toggle("late", s !== null && s >= 15 && s < 60);
    el.classList.toggle("stale", s === null || s >= 60);
  }
}

export function tickAges() {
  document.querySelectorAll("[data-time]").forEach(paintAge);
}

const STATUS_CLASS = {
  running: "ok", stopping: "warn", failed: "bad", created: "info", stopped: "",
  idle: "", waiting: "info", resetting: "info", uploading: "info", assigned: "info",
  safety_stop: "bad", fault: "bad", spooling: "warn",
};

export function badge(status) {
  return h("span", { class: `badge ${STATUS_CLASS[status] ?? ""}` }, status.replace("_", " "));
}

export function kindBadge(kind) {
  return h("span", { class: `badge ${kind}` }, kind.toUpperCase());
}

// -- the API -----------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`)
      .join("; ");
  }
  return JSON.stringify(detail);
}

async function request(method, path, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, `the service does not answer (${err.message})`);
  }
  const date = response.headers.get("Date");
  if (date) {
    const offset = Date.parse(date) - Date.now();
    // The header has whole seconds: only a clearly different clock is corrected.
    clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    throw new ApiError(response.status, describe(data?.detail ?? response.statusText));
  }
  return data;
}

export function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) query.set(key, value);
  }
  const qs = query.toString();
  // A kept token goes along: some services need one to read (DCLAW_READ_REQUIRES_TOKEN).
  return request("GET", qs ? `${path}?${qs}` : path, { token: storedToken() });
}

/** All pages of a list endpoint that pages with `after` and answers a plain list. */
export async function getAllAfter(path, after, limit = 1000) {
  const items = [];
  for (;;) {
    const page = await get(path, { after, limit });
    items.push(...page);
    if (page.length < limit) return items;
    after = page[page.length - 1].id;
  }
}

// -- the admin token ---------------------------------------------------------------------------
export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
}

export function showTokenState() {
  document.getElementById("token-state").hidden = !storedToken();
}

function askToken(error) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const message = document.getElementById("token-error");
  message.hidden = !error;
  message.textContent = error || "";
  input.value = "";
  return new Promise((resolve) => {
    const done = (token) => {
      dialog.removeEventListener("close", onClose);
      resolve(token);
    };
    const onClose = () => done(dialog.returnValue === "ok" && input.value.trim()
      ? input.value.trim() : null);
    dialog.addEventListener("close", onClose);
    document.getElementById("token-cancel").onclick = () => dialog.close("cancel");
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

/** Asks for a token to read with; the next refresh tells whether the service takes it. */
export async function askReadToken() {
  const token = await askToken("Reading this service needs a token (DCLAW_READ_REQUIRES_TOKEN " +
    "is set): the admin token, or the runner token to only read.");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    showTokenState();
  }
  return token;
}

/** A request that needs the admin token: asks for it once per tab, and again when refused. */
function keepToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  showTokenState();
}

export async function adminRequest(method, path, body) {
  let token = storedToken();
  let problem = null;
  for (;;) {
    if (!token) {
      token = await askToken(problem);
      if (!token) throw new ApiError(401, "no admin token given: nothing was changed");
    }
    try {
      const result = await request(method, path, { body, token });
      keepToken(token);
      return result;
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) {
        // The token passed (auth is checked first); the request itself was refused: keep it.
        if (err.status) keepToken(token);
        throw err;
      }
      forgetToken();
      token = null;
      problem = `The service refused the token (${err.status}: ${err.message}). ` +
        "Enter the admin token again (DCLAW_ADMIN_TOKEN on the service).";
      toast(`Refused: ${err.message}`, "bad");
    }
  }
}

// -- dialogs and toasts ------------------------------------------------------------------------
export function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      resolve(dialog.returnValue === "ok");
    };
    dialog.addEventListener("close", onClose);
    document.getElementById("confirm-cancel").onclick = () => dialog.close("cancel");
    document.getElementById("confirm-ok").value = "ok";
    dialog.returnValue = "";
    dialog.showModal();
  });
}

export function toast(text, kind = "") {
  const el = h("div", { class: `toast ${kind}`, role: kind === "bad" ? "alert" : "status" }, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), kind === "bad" ? 9000 : 4000);
}

/** Start or stop a run after asking; true when it was done. */
export async function runAction(run, action) {
  const texts = {
    start: ["Start", `Start run “${run.name}”? A trainer picks it up and runners get ` +
      "assignments (it resumes from its last checkpoint)."],
    stop: ["Stop", `Stop run “${run.name}”? The trainer ends its step after the episode it ` +
      "is learning from and checkpoints; " +
      "runners get no new assignments. The run can be started again."],
  };
  const [label, text] = texts[action];
  if (!(await confirmAction(`${label} run`, text, `${label} run`))) return false;
  try {
    const out = await adminRequest("POST", `/api/v1/runs/${run.id}/${action}`);
    toast(`Run “${run.name}” is ${out.status}.`, "ok");
    return true;
  } catch (err) {
    toast(`Could not ${action} run “${run.name}”: ${err.message}`, "bad");
    return false;
  }
}
