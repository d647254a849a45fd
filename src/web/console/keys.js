// The console's Keys tab: create a key (shown once, with a copy button),
// list with filters and paging, suspend or resume, set quota and rate
// limit, invalidate. Keys of the config file are read-only (409).
import { bytes, copyButton, el, errorBox, pager, show, table, when } from "./common.js";

export async function keysTab(view, admin) {
  const created = el("div", { "aria-live": "polite" });
  const list = el("section", { class: "card", id: "key-list" });
  const type = el("select", { id: "filter-type" }, [["", "Any type"], ["image", "Image"], ["storage", "Storage"]].map(([v, t]) => el("option", { value: v }, t)));
  const status = el("select", { id: "filter-status" }, [["", "Any status"], ["active", "Active"], ["suspended", "Suspended"]].map(([v, t]) => el("option", { value: v }, t)));
  const load = async (page) => {
    const q = new URLSearchParams({ page: String(page), limit: "20" });
    if (type.value) q.set("type", type.value);
    if (status.value) q.set("status", status.value);
    try {
      const r = await admin.call("GET", `/keys?${q}`);
      const rows = r.keys.map((k) => keyRow(k, admin, () => load(page)));
      show(list, el("h2", {}, "Keys"), filters,
        table("key-table", ["Owner", "Id", "Type", "Status", "Used / quota", "Rate /min", "Created", ""], rows, "No keys match."),
        pager(page, 20, r.pagination.total, load));
    } catch (e) {
      show(list, el("h2", {}, "Keys"), filters, errorBox(e));
    }
  };
  const filters = el("form", { class: "row" },
    el("div", {}, el("label", { for: "filter-type" }, "Type"), type),
    el("div", {}, el("label", { for: "filter-status" }, "Status"), status),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load(1);
  });
  show(view, createCard(admin, created, () => load(1)), list);
  await load(1);
}

function createCard(admin, created, reload) {
  const field = (id, label, input) => el("div", {}, el("label", { for: id }, label), input);
  const type = el("select", { id: "new-type" }, [["image", "Image (kikaku_...)"], ["storage", "Storage (kikaku_s3_...)"]].map(([v, t]) => el("option", { value: v }, t)));
  const owner = el("input", { id: "new-owner", required: true });
  const email = el("input", { id: "new-email", type: "email" });
  const quota = el("input", { id: "new-quota", placeholder: "1000 images, or 1GiB" });
  const rate = el("input", { id: "new-rate", type: "number", min: "1", placeholder: "10" });
  const expires = el("input", { id: "new-expires", type: "date" });
  const bucket = el("input", { id: "new-bucket", placeholder: "default" });
  const form = el("form", {},
    el("div", { class: "row" }, field("new-type", "Type", type), field("new-owner", "Owner", owner), field("new-email", "Email", email)),
    el("div", { class: "row" }, field("new-quota", "Quota", quota), field("new-rate", "Requests per minute", rate),
      field("new-expires", "Expires", expires), field("new-bucket", "Bucket (storage)", bucket)),
    el("p", {}, el("button", { type: "submit", id: "new-go" }, "Create key")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { type: type.value, owner: owner.value.trim() };
    if (email.value) body.email = email.value.trim();
    if (quota.value.trim()) body.quota = /^\d+$/.test(quota.value.trim()) ? Number(quota.value.trim()) : quota.value.trim();
    if (rate.value) body.rate_limit_per_minute = Number(rate.value);
    if (expires.value) body.expires_at = expires.value;
    if (bucket.value.trim() && type.value === "storage") body.bucket = bucket.value.trim();
    try {
      const r = await admin.call("POST", "/keys", body);
      show(created, el("div", { class: "shown-once", role: "status" },
        el("p", {}, `Key ${r.id} for ${r.owner || body.owner} (shown once):`),
        el("p", {}, el("code", { id: "created-key" }, r.key), " ", copyButton(r.key)),
        r.s3 ? el("p", {}, `S3 access key ${r.s3.access_key_id}, bucket ${r.bucket || body.bucket || "default"}.`) : null));
      form.reset();
      reload();
    } catch (e) {
      show(created, errorBox(e));
    }
  });
  return el("section", { class: "card" }, el("h2", {}, "New key"), form, created);
}

function keyRow(k, admin, reload) {
  const readOnly = k.source === "config";
  const out = el("div");
  const act = async (method, body) => {
    try {
      await admin.call(method, `/keys/${encodeURIComponent(k.id)}`, body);
      reload();
    } catch (e) {
      show(out, errorBox(e));
    }
  };
  const quota = el("input", { value: String(k.quota), "aria-label": `Quota of ${k.owner}`, class: "shrink", size: "10" });
  const rate = el("input", { value: String(k.rate_limit_per_minute ?? ""), type: "number", min: "1", "aria-label": `Rate limit of ${k.owner}`, size: "5" });
  const used = k.type === "storage" ? `${bytes(k.used)} / ${bytes(k.quota)}` : `${k.used} / ${k.quota}`;
  const suspended = k.status === "suspended";
  const actions = readOnly
    ? el("span", { class: "note" }, "From the config file (read-only)")
    : el("div", {},
      el("div", { class: "row" }, quota, rate,
        el("button", { type: "button", class: "small", onclick: () => {
          const q = quota.value.trim();
          act("PATCH", { quota: /^\d+$/.test(q) ? Number(q) : q, rate_limit_per_minute: Number(rate.value) });
        } }, "Save")),
      el("button", { type: "button", class: "small", "aria-label": `${suspended ? "Resume" : "Suspend"} ${k.owner}`,
        onclick: () => act("PATCH", { status: suspended ? "active" : "suspended" }) }, suspended ? "Resume" : "Suspend"), " ",
      el("button", { type: "button", class: "small danger", "aria-label": `Invalidate ${k.owner}`, onclick: () => {
        if (window.confirm(`Invalidate the key of ${k.owner}? It stops working everywhere within a second.`)) act("DELETE");
      } }, "Invalidate"),
      out);
  return el("tr", { "data-key-id": k.id },
    el("td", {}, k.owner, el("br"), el("span", { class: "note" }, k.email || "")),
    el("td", {}, k.id), el("td", {}, k.type), el("td", {}, k.status), el("td", {}, used),
    el("td", {}, String(k.rate_limit_per_minute ?? "")), el("td", {}, when(k.created_at)), el("td", {}, actions));
}
