// The customer portal: log in with a key (kept in this tab's
// sessionStorage, sent only as the Bearer header), the tabs, and the
// account tab (key reset). The image and storage tabs are image.js and
// storage.js.
import { api, copyButton, el, errorBox, show, tabCredential, tabs } from "./common.js";
import { imageTab } from "./image.js";
import { storageTab } from "./storage.js";

const STORE = "kikaku.key";
/** DESIGN §2's sentences, as the API's key_type filter words them. */
const WRONG_TYPE = {
  image: "You are logged in with an S3 Storage key. Please login with an AI Image API key (kikaku_xxx) to access this feature.",
  storage: "You are logged in with an AI Image key. Please login with an S3 Storage API key (kikaku_s3_xxx) to access this feature.",
};
const $ = (id) => document.getElementById(id);

/** `kikaku_s3_` is checked before `kikaku_` (DESIGN §2). */
export function keyType(key) {
  if (key.startsWith("kikaku_s3_")) return "storage";
  if (key.startsWith("kikaku_")) return "image";
  return null;
}

const session = tabCredential(STORE);

function loggedOut(message) {
  session.key = null;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  show($("login-error"), message ? errorBox(new Error(message)) : null);
  $("key").focus();
}

async function logIn(key) {
  const type = keyType(key);
  if (!type) {
    loggedOut("A key starts with kikaku_ (AI Image API) or kikaku_s3_ (S3 Storage).");
    return;
  }
  try {
    const usage = await api(key, "GET", type === "image" ? "/v1/usage" : "/s3/usage");
    session.key = key;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    const owner = usage.owner_name || usage.owner || "";
    const kind = type === "image" ? "AI Image API key" : "S3 Storage key";
    $("who").textContent = owner ? `${owner} · ${kind}` : kind;
    choose(type);
  } catch (e) {
    loggedOut(e.status === 401 ? "This key is not known to the gateway." : e.message);
  }
}

function accountTab(view) {
  const out = el("div");
  const button = el("button", { type: "button", class: "danger" }, "Reset my key");
  button.addEventListener("click", async () => {
    if (!window.confirm("Reset your key? The current key stops working at once.")) return;
    button.disabled = true;
    try {
      const r = await session.call("POST", "/account/rotate-key");
      session.key = r.key;
      show(
        out,
        el(
          "div",
          { class: "shown-once", role: "status" },
          el("p", {}, "Your new key (shown once; the old one no longer works):"),
          el("p", {}, el("code", { id: "new-key" }, r.key), " ", copyButton(r.key)),
        ),
      );
    } catch (e) {
      show(out, errorBox(e));
    } finally {
      button.disabled = false;
    }
  });
  show(
    view,
    el(
      "section",
      { class: "card" },
      el("h2", {}, "Reset your key"),
      el("p", {}, "If you suspect your key has been compromised, reset it immediately. " +
        "The new key keeps your quota, usage, logs, gallery, files and S3 credentials."),
      button,
      out,
    ),
  );
}

const choose = tabs(document.querySelector(".tabs"), (name) => {
  const view = $("view");
  show(view, el("p", { class: "note" }, "Loading…"));
  const type = keyType(session.key || "");
  if (WRONG_TYPE[name] && name !== type) {
    show(view, el("p", { class: "error", role: "alert", id: "wrong-type" }, WRONG_TYPE[name]));
  } else if (name === "image") imageTab(view, session);
  else if (name === "storage") storageTab(view, session);
  else accountTab(view);
});

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  logIn($("key").value.trim());
});
$("logout").addEventListener("click", () => loggedOut());

if (session.key) logIn(session.key);
else loggedOut();
