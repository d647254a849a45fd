// The portal's Image API tab (image keys): usage from /v1/usage, the
// generation form, the gallery as a paged grid, the logs with a date
// filter. A storage key gets the API's own 403 sentence (DESIGN §2).
import { el, errorBox, pager, show, stat, table, when } from "./common.js";

/** Size presets per model (DESIGN §3); anything else is WIDTHxHEIGHT. */
const MODELS = {
  "seedream-4.5": ["2K", "4K"],
  "seedream-4.0": ["1K", "2K", "4K"],
};
const MAX_PROMPT = 10000;

export async function imageTab(view, session) {
  let usage;
  try {
    usage = await session.call("GET", "/v1/usage");
  } catch (e) {
    show(view, errorBox(e));
    return;
  }
  const gallery = el("section", { class: "card", id: "gallery" });
  const logs = el("section", { class: "card", id: "logs" });
  show(view, usageCard(usage), generateCard(session, () => loadGallery(gallery, session, 1)), gallery, logs);
  loadGallery(gallery, session, 1);
  logsCard(logs, session);
}

function usageCard(u) {
  const s = u.stats || {};
  const rate = s.total_requests ? `${((100 * s.successful_requests) / s.total_requests).toFixed(1)} %` : "–";
  return el(
    "section",
    { class: "card", id: "usage" },
    el("h2", {}, "Usage"),
    el(
      "div",
      { class: "stats" },
      stat("Images used", `${u.used_count} / ${u.quota_limit}`),
      stat("Remaining", String(u.remaining)),
      stat("Success rate", rate),
      stat("Average response", s.avg_response_time_ms ? `${Math.round(s.avg_response_time_ms)} ms` : "–"),
      stat("Status", u.status),
    ),
  );
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

function generateCard(session, refreshGallery) {
  const model = el("select", { id: "gen-model" }, Object.keys(MODELS).map((m) => el("option", { value: m }, m)));
  const size = el("select", { id: "gen-size" });
  const custom = el("input", { id: "gen-custom", placeholder: "2048x2048", hidden: true, "aria-label": "Width x height" });
  const fillSizes = () => {
    show(size, [...MODELS[model.value], "custom"].map((p) => el("option", { value: p }, p === "custom" ? "Custom WxH" : p)));
    custom.hidden = true;
  };
  model.addEventListener("change", fillSizes);
  size.addEventListener("change", () => (custom.hidden = size.value !== "custom"));
  fillSizes();
  const prompt = el("textarea", { id: "gen-prompt", maxlength: String(MAX_PROMPT), required: true });
  const count = el("span", { class: "note", id: "gen-count" }, `0 / ${MAX_PROMPT}`);
  prompt.addEventListener("input", () => (count.textContent = `${prompt.value.length} / ${MAX_PROMPT}`));
  const batch = el("input", { id: "gen-batch", type: "number", min: "1", max: "15", value: "1" });
  const urls = el("textarea", { id: "gen-urls", placeholder: "https://example.com/reference.jpg" });
  const files = el("input", { id: "gen-files", type: "file", accept: "image/*", multiple: true });
  const watermark = el("input", { id: "gen-watermark", type: "checkbox" });
  const go = el("button", { type: "submit", id: "gen-go" }, "Generate");
  const status = el("div", { "aria-live": "polite" });
  const results = el("div", { class: "results", id: "gen-results" });
  const form = el(
    "form",
    {},
    el("div", { class: "row" },
      el("div", {}, el("label", { for: "gen-model" }, "Model"), model),
      el("div", {}, el("label", { for: "gen-size" }, "Size"), size, custom),
      el("div", {}, el("label", { for: "gen-batch" }, "Images (batch)"), batch)),
    el("label", { for: "gen-prompt" }, "Prompt"), prompt, count,
    el("label", { for: "gen-urls" }, "Reference image URLs (one per line)"), urls,
    el("label", { for: "gen-files" }, "Or reference image files"), files,
    el("label", { for: "gen-watermark" }, watermark, " Watermark"),
    el("p", {}, go),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      model: model.value,
      prompt: prompt.value,
      size: size.value === "custom" ? custom.value.trim() : size.value,
      watermark: watermark.checked,
      response_format: "url",
    };
    const refs = urls.value.split("\n").map((u) => u.trim()).filter(Boolean);
    try {
      for (const f of files.files) refs.push(await readAsDataUrl(f));
    } catch (e) {
      show(status, errorBox(e));
      return;
    }
    if (refs.length) body.image = refs.length === 1 ? refs[0] : refs;
    const n = Number(batch.value) || 1;
    if (n > 1) {
      body.sequential_image_generation = "auto";
      body.sequential_image_generation_options = { max_images: n };
    }
    go.disabled = true;
    show(status, el("p", { class: "note busy", role: "status" }, "Generating"));
    show(results);
    try {
      const r = await session.call("POST", "/v1/images/generations", body);
      const ok = r.data.filter((d) => d.url || d.b64_json).length;
      show(status, el("p", { class: "okay", role: "status" }, `${ok} of ${r.data.length} images generated.`));
      show(results, r.data.map((d, i) =>
        d.error
          ? el("p", { class: "error" }, `Image ${i + 1}: ${d.error.message}`)
          : el("figure", {},
            el("img", { src: d.url || `data:image/jpeg;base64,${d.b64_json}`, alt: `Generated image ${i + 1}` }),
            el("figcaption", {}, d.size || ""))));
      refreshGallery();
    } catch (e) {
      show(status, errorBox(e));
    } finally {
      go.disabled = false;
    }
  });
  return el("section", { class: "card", id: "generate" }, el("h2", {}, "Generate images"), form, status, results);
}

async function loadGallery(card, session, page) {
  const limit = 12;
  let g;
  try {
    g = await session.call("GET", `/v1/gallery?page=${page}&limit=${limit}`);
  } catch (e) {
    show(card, el("h2", {}, "Gallery"), errorBox(e));
    return;
  }
  const items = g.images.map((im) =>
    el("figure", {},
      el("img", { src: im.s3_url, alt: im.prompt, loading: "lazy" }),
      el("figcaption", {}, `${im.model} · ${im.image_size} · ${when(im.created_at)}`)));
  show(
    card,
    el("h2", {}, "Gallery"),
    items.length ? el("div", { class: "grid" }, items) : el("p", { class: "note" }, "No images yet."),
    pager(page, limit, g.pagination.total, (p) => loadGallery(card, session, p)),
  );
}

function logsCard(card, session) {
  const start = el("input", { type: "date", id: "logs-start" });
  const end = el("input", { type: "date", id: "logs-end" });
  const box = el("div", { id: "logs-table" });
  const load = async (page) => {
    const q = new URLSearchParams({ page: String(page), limit: "20" });
    if (start.value) q.set("start_date", start.value);
    if (end.value) q.set("end_date", end.value);
    try {
      const r = await session.call("GET", `/v1/logs?${q}`);
      const rows = r.logs.map((l) =>
        el("tr", {}, el("td", {}, when(l.timestamp)), el("td", {}, l.model), el("td", {}, l.status),
          el("td", {}, `${l.response_time_ms} ms`), el("td", {}, l.error_message || "")));
      show(box,
        table("logs-grid", ["Time", "Model", "Status", "Response", "Error"], rows, "No requests in this range."),
        pager(page, 20, r.pagination.total, load));
    } catch (e) {
      show(box, errorBox(e));
    }
  };
  const form = el("form", { class: "row" },
    el("div", {}, el("label", { for: "logs-start" }, "From"), start),
    el("div", {}, el("label", { for: "logs-end" }, "To"), end),
    el("button", { type: "submit", id: "logs-filter" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load(1);
  });
  show(card, el("h2", {}, "Logs"), form, box);
  load(1);
}
