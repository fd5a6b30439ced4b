// Shared helpers of the kfpd web UI: building elements, calling the REST API,
// formatting, dialogs. Everything user-controlled is inserted as text, never as HTML.
"use strict";

const API = "/apis/v2beta1";
const PAGE_SIZE = 20;
// A request still unanswered after this long is abandoned.
const REQUEST_TIMEOUT_MS = 15000;
const TERMINAL = new Set(["SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"]);
const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED"];

function h(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.setAttribute("class", value);
    // Through the CSSOM: the Content-Security-Policy blocks style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function queryString(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? "?" + text : "";
}

// Multi-user mode (the page's kfpd-multi-user mark says so): lists and creates of runs,
// experiments and recurring runs are in the namespace the user picked in the
// header, kept in the browser. The pipelines page asks for its namespace itself:
// pipelines are the namespace's own or shared.
const NAMESPACE_KEY = "kfpd.namespace";
const NAMESPACED = new Set(["/runs", "/runs:watch", "/experiments", "/recurringruns"]);
let multiUser = false;

function currentNamespace() {
  if (!multiUser) return "";
  try {
    return localStorage.getItem(NAMESPACE_KEY) || "";
  } catch (_) {
    return "";
  }
}

function setNamespace(namespace) {
  try {
    localStorage.setItem(NAMESPACE_KEY, namespace);
  } catch (_) { /* storage refused: the choice lasts until the page reloads */ }
}

// The query and body of a call with the namespace added where the API needs one;
// without a chosen namespace such a call is refused here, with what to do.
function namespaced(path, method, query, body) {
  if (!multiUser || !NAMESPACED.has(path)) return { query, body };
  const namespace = currentNamespace();
  if (!namespace) throw new ApiError(400, "Choose a namespace (at the top of the page) to see and create runs, experiments and recurring runs.");
  if (method === "GET") return { query: { ...(query || {}), namespace }, body };
  if (method === "POST" && body && !(body instanceof FormData) && path !== "/runs") {
    return { query, body: { namespace, ...body } };
  }
  return { query, body };
}

// One call to the REST API. `body` is sent as JSON, or as is when it is FormData.
async function api(path, givenQuery, options) {
  const { method = "GET" } = options || {};
  const { query, body } = namespaced(path, method, givenQuery, (options || {}).body);
  const init = { method, headers: { accept: "application/json" }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(API + path + queryString(query), init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (_) {
    parsed = null;
  }
  if (!response.ok) {
    const message = parsed && (parsed.message || parsed.error_message)
      ? (parsed.message || parsed.error_message)
      : (text.trim() || response.status + " " + response.statusText);
    throw new ApiError(response.status, message);
  }
  return parsed || {};
}

const EPOCH_YEAR = 1971;

function validDate(text) {
  if (!text) return null;
  const date = new Date(text);
  if (isNaN(date) || date.getUTCFullYear() < EPOCH_YEAR) return null;
  return date;
}

// A moment in the browser's time zone and locale, machine-readable in `datetime`.
function time(text) {
  const date = validDate(text);
  return date ? h("time", { datetime: date.toISOString() }, date.toLocaleString()) : "";
}

function seconds(total) {
  let rest = Math.max(0, Math.round(total));
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  rest -= minutes * 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${rest}s`;
  return `${rest}s`;
}

function duration(start, end) {
  const from = validDate(start);
  if (!from) return "";
  const to = validDate(end);
  return seconds(((to ? to.getTime() : Date.now()) - from.getTime()) / 1000);
}

function state(value) {
  const name = value || "RUNTIME_STATE_UNSPECIFIED";
  const label = name === "RUNTIME_STATE_UNSPECIFIED" ? "UNKNOWN" : name;
  return h("span", { class: "state " + name, "data-state": name }, label);
}

function table(headers, rows, emptyText, attrs) {
  if (!rows.length) return h("div", { class: "empty card" }, emptyText);
  return h("div", { class: "table-wrap", ...(attrs || {}) },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((header) => header instanceof Node
        ? header
        : h("th", { class: header[1], scope: "col" }, header[0])))),
      h("tbody", {}, rows)));
}

// Marks the first paint of a view's content in this document, for the benchmark
// (bench/src/bin/ui.rs reads the `kfpd:rendered` mark through the Performance API).
function markRendered() {
  if (performance.getEntriesByName("kfpd:rendered").length) return;
  requestAnimationFrame(() => setTimeout(() => {
    if (!performance.getEntriesByName("kfpd:rendered").length) performance.mark("kfpd:rendered");
  }, 0));
}

function render(...nodes) {
  const page = document.getElementById("page");
  page.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

function errorBox(error, what) {
  const status = error instanceof ApiError ? error.status : 0;
  const message = status === 404 ? `${what} was not found (it may have been deleted).`
    : status === 403 ? `Access denied to ${what.toLowerCase()} here: ${error.message}`
      : status === 401 ? `Not signed in: ${error.message}`
        : `Could not load ${what.toLowerCase()}: ${error.message}`;
  return h("div", { class: "error", role: "alert" }, message);
}

function showError(error, what) {
  render(errorBox(error, what));
}

function value(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, detail, cls]) =>
    [h("dt", {}, term), h("dd", { class: cls }, detail)]));
}

function go(path, query) {
  location.hash = "#" + path + queryString(Object.fromEntries(Object.entries(query || {}).filter(([, v]) => v)));
}

const enc = encodeURIComponent;
const runHref = (id) => `#/runs/details/${enc(id)}`;
const experimentHref = (id) => `#/experiments/details/${enc(id)}`;
const pipelineHref = (id) => `#/pipelines/details/${enc(id)}`;
const versionHref = (pid, vid) => `#/pipelines/details/${enc(pid)}/version/${enc(vid)}`;
const recurringHref = (id) => `#/recurringruns/details/${enc(id)}`;

// A message at the top of the page that stays until the next navigation.
function notice(text, kind) {
  const box = document.getElementById("notice");
  if (!box) return;
  box.className = "notice " + (kind || "ok");
  box.textContent = text;
  box.hidden = !text;
}

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

// Asks before a destructive action; resolves true when confirmed. The dialog is
// modal: Tab and Shift+Tab cycle inside it, Escape cancels, and focus returns to
// where it was.
function confirmAction(question, confirmLabel) {
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-label": "Confirm", "aria-describedby": "confirm-question" });
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
      resolve(answer);
    };
    dialog.append(
      h("p", { id: "confirm-question" }, question),
      h("div", { class: "buttons" },
        h("button", { type: "button", id: "confirm-no", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: "danger", id: "confirm-yes", onclick: () => close(true) }, confirmLabel || "OK")));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(false);
    });
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const inside = [...dialog.querySelectorAll(FOCUSABLE)];
      if (!inside.length) return;
      const first = inside[0];
      const last = inside[inside.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("#confirm-yes").focus();
  });
}

// Runs an action from a button: disables it meanwhile, reports the outcome.
async function act(button, label, call, after) {
  button.disabled = true;
  try {
    await call();
    if (after) await after();
    notice(label + ": done.");
  } catch (error) {
    notice(`${label} failed: ${error.message}`, "bad");
  } finally {
    button.disabled = false;
  }
}

function button(label, onclick, attrs) {
  return h("button", { type: "button", onclick, ...(attrs || {}) }, label);
}

// Paging keeps the tokens of earlier pages in the fragment ("prev" list).
function pager(path, query, nextToken) {
  const previous = query.prev ? query.prev.split(",") : [];
  const back = () => {
    const tokens = previous.slice();
    const token = tokens.pop();
    go(path, { ...query, token: token === "-" ? "" : token, prev: tokens.join(",") });
  };
  const forward = () => go(path, { ...query, token: nextToken, prev: previous.concat(query.token || "-").join(",") });
  return h("div", { class: "pager" },
    h("button", { onclick: back, disabled: previous.length === 0, "aria-label": "Previous page" }, "‹ Previous"),
    h("span", {}, `Page ${previous.length + 1}`),
    h("button", { onclick: forward, disabled: !nextToken, "aria-label": "Next page" }, "Next ›"));
}

function predicateFilter(predicates) {
  return predicates.length ? JSON.stringify({ predicates }) : "";
}

// The pipeline spec inside a version or run (`pipeline_spec` may wrap it with a
// platform spec).
function innerSpec(spec) {
  if (!spec) return {};
  return spec.pipeline_spec || spec;
}

function decodeBase64(data) {
  const binary = atob(data || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Reads a text/event-stream with fetch (so a 404 is an answer, not a console
// error loop); calls onEvent(name, data) per event; resolves when the stream ends.
async function readEvents(url, signal, onEvent) {
  const response = await fetch(url, { headers: { accept: "text/event-stream" }, signal });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      message = (await response.json()).message || message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value: chunk, done } = await reader.read();
    if (done) return;
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

// Lists longer than this keep only the rows in view (and a margin) in the DOM, so
// a run of thousands of tasks scrolls and updates quickly.
const WINDOW_FROM = 200;
const WINDOW_MARGIN = 30;

// Rows of equal height inside a scrolling element. `spacer(px)` makes an empty row
// that stands in for the rows not drawn; `row(item)` draws one.
class Windowed {
  constructor(scroller, host, spacer) {
    this.scroller = scroller;
    this.host = host;
    this.spacer = spacer;
    this.items = [];
    this.row = null;
    this.rowHeight = 0;
    this.range = "";
    this.pending = false;
    scroller.addEventListener("scroll", () => {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw(false);
      });
    });
  }

  set(items, row) {
    this.items = items;
    this.row = row;
    this.draw(true);
  }

  // Draws the rows in view; `force` redraws them even when the range is the same.
  draw(force) {
    const count = this.items.length;
    if (count <= WINDOW_FROM) {
      this.range = "";
      this.keepFocus(() => this.host.replaceChildren(...this.items.map(this.row)));
      return;
    }
    if (!this.rowHeight) {
      const probe = this.row(this.items[0]);
      this.host.replaceChildren(probe);
      this.rowHeight = probe.getBoundingClientRect().height || 30;
    }
    const offset = this.host.getBoundingClientRect().top - this.scroller.getBoundingClientRect().top + this.scroller.scrollTop;
    const top = this.scroller.scrollTop - offset;
    const height = this.scroller.clientHeight || window.innerHeight;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - WINDOW_MARGIN);
    const last = Math.min(count, Math.ceil((top + height) / this.rowHeight) + WINDOW_MARGIN);
    const range = `${first}:${last}`;
    if (!force && range === this.range) return;
    this.range = range;
    this.keepFocus(() => this.host.replaceChildren(
      this.spacer(first * this.rowHeight),
      ...this.items.slice(first, last).map(this.row),
      this.spacer((count - last) * this.rowHeight)));
  }

  // Redraws without losing the keyboard's place: the focused row's first control
  // (rows carry `data-row-key`) gets the focus back.
  keepFocus(redraw) {
    const active = document.activeElement;
    const row = active && this.host.contains(active) ? active.closest("[data-row-key]") : null;
    redraw();
    if (!row) return;
    const again = [...this.host.querySelectorAll("[data-row-key]")].find((node) => node.dataset.rowKey === row.dataset.rowKey);
    const target = again && again.querySelector(FOCUSABLE);
    if (target) target.focus();
  }
}
