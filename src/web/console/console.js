// The operator console: log in with the admin token (kept in this tab's
// sessionStorage), then stats, keys (keys.js), buckets and their objects,
// and presigned URLs, all through the management API (/admin/v1).
import { api, copyButton, el, errorBox, show, stat, table, tabCredential, tabs, when } from "./common.js";
import { keysTab } from "./keys.js";

const STORE = "kikaku.admin";
const $ = (id) => document.getElementById(id);

const admin = tabCredential(STORE, "/admin/v1");

function loggedOut(message) {
  admin.key = null;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  show($("login-error"), message ? errorBox(new Error(message)) : null);
  $("token").focus();
}

async function logIn(token) {
  try {
    await api(token, "GET", "/admin/v1/stats");
    admin.key = token;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = "Operator";
    choose("stats");
  } catch (e) {
    loggedOut(e.status === 401 ? "That is not the admin token." : e.message);
  }
}

async function statsTab(view) {
  const s = await admin.call("GET", "/stats");
  show(view, el("section", { class: "card", id: "stats" },
    el("h2", {}, "Stats"),
    el("div", { class: "stats" },
      stat("Keys (image / storage)", `${s.keys.image} / ${s.keys.storage}`),
      stat("Active / suspended", `${s.keys.active} / ${s.keys.suspended}`),
      stat("Images generated", String(s.images_generated)),
      stat("S3 credentials", String(s.credentials)),
      stat("Buckets", String(s.buckets)),
      stat("Objects", String(s.objects)),
      stat("Total storage", s.total_storage_human),
      stat("Multipart uploads", String(s.active_multipart_uploads)),
      stat("Presigned URLs", String(s.active_presigned_urls)))));
}

const enc = (s) => s.split("/").map(encodeURIComponent).join("/");

async function bucketsTab(view) {
  const r = await admin.call("GET", "/buckets");
  const objects = el("section", { class: "card", id: "objects", hidden: true });
  const rows = r.buckets.map((b) => el("tr", {},
    el("td", {}, b.name), el("td", {}, b.owner_name), el("td", {}, b.owner),
    el("td", {}, String(b.object_count)), el("td", {}, b.total_size_human),
    el("td", {}, el("button", { type: "button", class: "small", onclick: () => browse(objects, b, "") }, `Browse ${b.name}`))));
  show(view,
    el("section", { class: "card" }, el("h2", {}, "Buckets"),
      table("bucket-table", ["Bucket", "Owner", "Owner id", "Objects", "Size", ""], rows, "No buckets yet.")),
    objects);
}

async function browse(card, b, prefix) {
  card.hidden = false;
  const base = `/buckets/${encodeURIComponent(b.owner)}/${encodeURIComponent(b.name)}`;
  let r;
  try {
    r = await admin.call("GET", `${base}/objects?prefix=${encodeURIComponent(prefix)}`);
  } catch (e) {
    show(card, el("h2", {}, b.name), errorBox(e));
    return;
  }
  const filter = el("input", { id: "object-prefix", value: prefix, "aria-label": "Prefix" });
  const form = el("form", { class: "row" }, el("div", {}, el("label", { for: "object-prefix" }, "Prefix"), filter),
    el("button", { type: "submit" }, "List"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    browse(card, b, filter.value);
  });
  const rows = r.objects.map((o) => el("tr", {},
    el("td", {}, o.key), el("td", {}, o.size_human), el("td", {}, when(o.created_at)),
    el("td", {}, el("button", {
      type: "button", class: "small danger", "aria-label": `Delete ${o.key}`,
      onclick: async () => {
        if (!window.confirm(`Delete ${b.name}/${o.key}? Its bytes return to the owner's quota.`)) return;
        try {
          await admin.call("DELETE", `${base}/objects/${enc(o.key)}`);
          browse(card, b, prefix);
        } catch (e) {
          card.append(errorBox(e));
        }
      },
    }, "Delete"))));
  show(card, el("h2", {}, `Objects of ${b.name} (${b.owner_name})`), form,
    table("object-table", ["Key", "Size", "Modified", ""], rows, "No objects."));
  card.scrollIntoView({ block: "nearest" });
}

async function presignedTab(view) {
  const list = el("div");
  const result = el("div", { "aria-live": "polite" });
  const field = (id, label, input) => el("div", {}, el("label", { for: id }, label), input);
  const owner = el("input", { id: "ps-owner", required: true });
  const bucket = el("input", { id: "ps-bucket", required: true });
  const key = el("input", { id: "ps-key", required: true });
  const method = el("select", { id: "ps-method" }, ["GET", "PUT", "DELETE"].map((m) => el("option", { value: m }, m)));
  const expires = el("input", { id: "ps-expires", type: "number", min: "1", max: "604800", value: "3600" });
  const form = el("form", {},
    el("div", { class: "row" }, field("ps-owner", "Owner id (storage key id)", owner), field("ps-bucket", "Bucket", bucket)),
    el("div", { class: "row" }, field("ps-key", "Object key", key), field("ps-method", "Method", method),
      field("ps-expires", "Expires in (seconds)", expires)),
    el("p", {}, el("button", { type: "submit" }, "Create URL")));
  const load = async () => {
    try {
      const r = await admin.call("GET", "/presigned-urls");
      const rows = r.urls.map((u) => el("tr", {}, el("td", {}, u.method), el("td", {}, u.bucket_name),
        el("td", {}, u.object_key), el("td", {}, u.owner_id), el("td", {}, when(u.expires_at))));
      show(list, table("presigned-table", ["Method", "Bucket", "Key", "Owner", "Expires"], rows, "No live presigned URLs."));
    } catch (e) {
      show(list, errorBox(e));
    }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await admin.call("POST", "/presigned-urls", {
        owner_id: owner.value.trim(), bucket_name: bucket.value.trim(), object_key: key.value,
        method: method.value, expires_in: Number(expires.value),
      });
      show(result, el("div", { class: "shown-once", role: "status" },
        el("p", {}, `${r.method} URL, valid until ${when(r.expires_at)}:`),
        el("p", {}, el("code", { id: "presigned-url" }, r.url), " ", copyButton(r.url))));
      load();
    } catch (e) {
      show(result, errorBox(e));
    }
  });
  show(view, el("section", { class: "card" }, el("h2", {}, "New presigned URL"), form, result),
    el("section", { class: "card" }, el("h2", {}, "Live presigned URLs"), list));
  load();
}

const choose = tabs(document.querySelector(".tabs"), async (name) => {
  const view = $("view");
  show(view, el("p", { class: "note" }, "Loading…"));
  try {
    if (name === "stats") await statsTab(view);
    else if (name === "keys") await keysTab(view, admin);
    else if (name === "buckets") await bucketsTab(view);
    else await presignedTab(view);
  } catch (e) {
    if (e.status === 401) loggedOut("The admin token no longer works.");
    else show(view, errorBox(e));
  }
});

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  logIn($("token").value.trim());
});
$("logout").addEventListener("click", () => loggedOut());

if (admin.key) logIn(admin.key);
else loggedOut();
