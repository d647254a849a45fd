// What the portal and the console share: building elements (text only,
// never HTML from data), calling the gateway's JSON APIs with a bearer
// credential, and showing their errors.

/** An element: `el("button", {type: "button", onclick}, "Save")`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** Replace what `node` shows. */
export function show(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

/** An API error: the status, the API's own message, when to retry. */
export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The message of an API's error answer, whichever shape it has. */
function messageOf(body, status) {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) return body.error.message;
    if (typeof body.error === "string") return body.error;
    if (typeof body.msg === "string") return body.msg;
  }
  if (typeof body === "string" && body.trim()) return body.trim();
  return `The gateway answered ${status}.`;
}

/** Call `path` with `token` as the bearer; the parsed JSON, or ApiError. */
export async function api(token, method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `The gateway could not be reached: ${e.message}`);
  }
  const text = await resp.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    /* not JSON: keep the text */
  }
  if (!resp.ok) {
    const retry = Number(resp.headers.get("Retry-After")) || undefined;
    throw new ApiError(resp.status, messageOf(data, resp.status), retry);
  }
  return data;
}

/**
 * The tab's credential (a key, the admin token), kept in its
 * sessionStorage under `name` and sent only as the Bearer header, and the
 * calls made with it to paths under `base`.
 */
export function tabCredential(name, base = "") {
  return {
    get key() {
      return sessionStorage.getItem(name);
    },
    set key(k) {
      if (k) sessionStorage.setItem(name, k);
      else sessionStorage.removeItem(name);
    },
    call(method, path, body) {
      return api(this.key, method, base + path, body);
    },
  };
}

/** What a user reads for an error (a 429 says when to try again). */
export function errorText(err) {
  if (err instanceof ApiError && err.status === 429 && err.retryAfter) {
    return `${err.message} Try again in ${err.retryAfter} s.`;
  }
  return err && err.message ? err.message : String(err);
}

/** An error box for `err`, announced to screen readers. */
export function errorBox(err) {
  return el("p", { class: "error", role: "alert" }, errorText(err));
}

/** Copy `text`; the button says so for a moment. */
export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    const was = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = was), 1500);
  } catch (e) {
    button.textContent = "Copy failed";
  }
}

/** A "Copy" button for `text` (a function is read when clicked). */
export function copyButton(text, label = "Copy") {
  const b = el("button", { type: "button", class: "small" }, label);
  b.addEventListener("click", () => copy(typeof text === "function" ? text() : text, b));
  return b;
}

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** An RFC 3339 time, or unix seconds, as local date and time. */
export function when(t) {
  if (t === null || t === undefined || t === "") return "";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** A labelled value for a summary grid. */
export function stat(label, value) {
  return el("div", { class: "stat" }, el("span", { class: "label" }, label), el("strong", {}, value));
}

/** Tabs: buttons with `data-tab`; `open(name)` is called on a choice. */
export function tabs(nav, open) {
  const buttons = [...nav.querySelectorAll("[data-tab]")];
  const choose = (name) => {
    for (const b of buttons) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    open(name);
  };
  for (const b of buttons) b.addEventListener("click", () => choose(b.dataset.tab));
  return choose;
}

/**
 * A table in its scrolling wrapper: column `headers`, `rows` of `tr`s
 * (`empty` when there are none). Each cell is labelled with its column, so
 * at phone width rows stack as cards (style.css).
 */
export function table(id, headers, rows, empty) {
  const body = rows.length ? rows : [el("tr", {}, el("td", { colspan: String(headers.length) }, empty))];
  for (const tr of body) {
    [...tr.children].forEach((td, i) => {
      if (headers[i]) td.setAttribute("data-label", headers[i]);
    });
  }
  return el("div", { class: "table-wrap" },
    el("table", { id },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, body)));
}

/** Previous/next for a page of `total` items. */
export function pager(page, limit, total, go) {
  const pages = Math.max(1, Math.ceil(total / limit));
  return el(
    "div",
    { class: "pager" },
    el("button", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "Previous"),
    el("span", {}, `Page ${page} of ${pages}`),
    el("button", { type: "button", disabled: page >= pages, onclick: () => go(page + 1) }, "Next"),
  );
}
