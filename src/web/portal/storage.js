// The portal's Storage tab (storage keys): usage from /s3/usage, a file
// browser over /s3/files (folders by prefix, upload with progress,
// download, delete), and the S3 credentials with seed 000's snippets
// filled in. An image key gets the API's own 403 sentence (DESIGN §2).
import { bytes, copyButton, el, errorBox, show, stat, table, when } from "./common.js";

export async function storageTab(view, session) {
  let usage;
  try {
    usage = await session.call("GET", "/s3/usage");
  } catch (e) {
    show(view, errorBox(e));
    return;
  }
  const usageBox = el("section", { class: "card", id: "usage" });
  const refreshUsage = async () => {
    try {
      showUsage(usageBox, await session.call("GET", "/s3/usage"));
    } catch (e) {
      show(usageBox, el("h2", {}, "Storage"), errorBox(e));
    }
  };
  showUsage(usageBox, usage);
  // The uploader stays while folders change, so its progress stays shown.
  const listing = el("div");
  const folder = { prefix: "" };
  const open = (prefix) => {
    folder.prefix = prefix;
    browse(listing, session, prefix, open, refreshUsage);
  };
  const upload = uploader(session, () => folder.prefix, async () => {
    await refreshUsage();
    open(folder.prefix);
  });
  const files = el("section", { class: "card", id: "files" }, el("h2", {}, "Files"), upload, listing);
  const creds = el("section", { class: "card", id: "credentials" });
  show(view, usageBox, files, creds);
  open("");
  credentials(creds, session);
}

function showUsage(box, u) {
  show(
    box,
    el("h2", {}, "Storage"),
    el(
      "div",
      { class: "stats" },
      stat("Used", `${bytes(u.used)} of ${bytes(u.quota)}`),
      stat("Remaining", bytes(u.remaining)),
      stat("Status", u.status),
      stat("Bucket", u.bucket),
    ),
  );
}

/** `a/b c.txt` → `a/b%20c.txt`: each segment encoded, slashes kept. */
const encodeKey = (key) => key.split("/").map(encodeURIComponent).join("/");

async function listAll(session, prefix) {
  const out = [];
  let cursor = "";
  for (let i = 0; i < 20; i += 1) {
    const q = new URLSearchParams({ prefix, limit: "1000" });
    if (cursor) q.set("cursor", cursor);
    const page = await session.call("GET", `/s3/files?${q}`);
    out.push(...page.files);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return out;
}

async function browse(card, session, prefix, open, refreshUsage) {
  const again = () => open(prefix);
  let listed;
  try {
    listed = await listAll(session, prefix);
  } catch (e) {
    show(card, errorBox(e));
    return;
  }
  const folders = new Set();
  const here = [];
  for (const f of listed) {
    const rest = f.key.slice(prefix.length);
    const cut = rest.indexOf("/");
    if (cut >= 0) folders.add(rest.slice(0, cut + 1));
    else if (rest) here.push(f);
  }
  const crumbs = el("nav", { class: "crumbs", "aria-label": "Folder" },
    el("button", { type: "button", class: "small", onclick: () => open("") }, "All files"));
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += `${part}/`;
    const to = acc;
    crumbs.append(" / ", el("button", { type: "button", class: "small", onclick: () => open(to) }, part));
  }
  const rows = [
    ...[...folders].sort().map((f) =>
      el("tr", {},
        el("td", {}, el("button", { type: "button", class: "small", onclick: () => open(prefix + f) }, `▸ ${f}`)),
        el("td", {}), el("td", {}), el("td", {}))),
    ...here.map((f) =>
      el("tr", {},
        el("td", {}, f.key.slice(prefix.length)),
        el("td", {}, bytes(f.size)),
        el("td", {}, when(f.last_modified)),
        el("td", {},
          el("button", { type: "button", class: "small", onclick: () => download(session, f.key) }, "Download"), " ",
          el("button", {
            type: "button", class: "small danger", "aria-label": `Delete ${f.key}`,
            onclick: async () => {
              if (!window.confirm(`Delete ${f.key}? This cannot be undone.`)) return;
              try {
                await session.call("DELETE", `/s3/files/${encodeKey(f.key)}`);
                await refreshUsage();
                again();
              } catch (e) {
                card.append(errorBox(e));
              }
            },
          }, "Delete")))),
  ];
  show(card, crumbs, table("file-table", ["Name", "Size", "Modified", ""], rows, "No files here yet."));
}

function uploader(session, folder, done) {
  const input = el("input", { type: "file", id: "upload-file" });
  const bar = el("progress", { max: "100", value: "0", hidden: true, "aria-label": "Upload progress" });
  const status = el("div", { "aria-live": "polite" });
  const go = el("button", { type: "submit", id: "upload-go" }, "Upload");
  const form = el("form", { class: "row" },
    el("div", {}, el("label", { for: "upload-file" }, "Upload a file to the folder shown below"), input),
    go);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = input.files[0];
    if (!file) {
      show(status, errorBox(new Error("Choose a file first.")));
      return;
    }
    const body = new FormData();
    body.append("key", folder() + file.name);
    body.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/s3/upload");
    xhr.setRequestHeader("Authorization", `Bearer ${session.key}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("load", async () => {
      go.disabled = false;
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = 100;
        show(status, el("p", { class: "okay", role: "status" }, `Uploaded ${file.name}.`));
        await done();
      } else {
        let msg = `The gateway answered ${xhr.status}.`;
        try {
          msg = JSON.parse(xhr.responseText).error.message || msg;
        } catch (_) {
          /* keep the status */
        }
        const retry = xhr.getResponseHeader("Retry-After");
        show(status, errorBox(new Error(retry ? `${msg} Try again in ${retry} s.` : msg)));
      }
    });
    xhr.addEventListener("error", () => {
      go.disabled = false;
      show(status, errorBox(new Error("The upload broke off.")));
    });
    go.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    show(status);
    xhr.send(body);
  });
  return el("div", {}, form, bar, status);
}

/** Fetch with the key (never in a URL), then save as the file's name. */
async function download(session, key) {
  const resp = await fetch(`/s3/files/${encodeKey(key)}`, { headers: { Authorization: `Bearer ${session.key}` } });
  if (!resp.ok) {
    window.alert(`Download failed: the gateway answered ${resp.status}.`);
    return;
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: key.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function credentials(card, session) {
  let c;
  try {
    c = await session.call("GET", "/s3/credentials");
  } catch (e) {
    show(card, el("h2", {}, "S3 credentials"), errorBox(e));
    return;
  }
  let revealed = false;
  const secret = el("dd", { id: "secret" });
  const snippets = el("div");
  const masked = "•".repeat(24);
  const render = () => {
    secret.textContent = revealed ? c.secret_access_key : masked;
    reveal.textContent = revealed ? "Hide" : "Reveal";
    const s = revealed ? c.secret_access_key : "YOUR_SECRET_KEY (reveal it above)";
    show(snippets, snippet("AWS CLI", awsCli(c, s)), snippet("Python (boto3)", boto3(c, s)), snippet("JavaScript (AWS SDK v3)", sdk(c, s)));
  };
  const reveal = el("button", { type: "button", class: "small", id: "reveal", onclick: () => {
    revealed = !revealed;
    render();
  } }, "Reveal");
  const row = (label, value, id) => [el("dt", {}, label), el("dd", { id }, value), copyButton(value)];
  show(card,
    el("h2", {}, "S3 credentials"),
    el("dl", { class: "kv" },
      row("Endpoint", c.endpoint, "endpoint"),
      row("Region", c.region, "region"),
      row("Bucket", c.bucket, "bucket"),
      row("Access key", c.access_key_id, "access-key"),
      el("dt", {}, "Secret key"), secret, el("span", {}, reveal, " ", copyButton(() => c.secret_access_key))),
    el("h3", {}, "Use them"),
    snippets);
  render();
}

function snippet(title, code) {
  return el("div", {}, el("h3", {}, title), el("pre", {}, el("code", {}, code)), copyButton(code, `Copy ${title} snippet`));
}

const awsCli = (c, s) => `# Configure
aws configure set aws_access_key_id ${c.access_key_id}
aws configure set aws_secret_access_key ${s}
aws configure set default.region ${c.region}
# List files
aws s3 ls s3://${c.bucket} --endpoint-url ${c.endpoint}
# Upload file
aws s3 cp myfile.txt s3://${c.bucket}/myfile.txt --endpoint-url ${c.endpoint}
# Download file
aws s3 cp s3://${c.bucket}/myfile.txt ./myfile.txt --endpoint-url ${c.endpoint}`;

const boto3 = (c, s) => `import boto3
s3 = boto3.client('s3',
    endpoint_url='${c.endpoint}',
    aws_access_key_id='${c.access_key_id}',
    aws_secret_access_key='${s}',
    region_name='${c.region}')
# Upload
s3.upload_file('myfile.txt', '${c.bucket}', 'myfile.txt')
# Download
s3.download_file('${c.bucket}', 'myfile.txt', './myfile.txt')
# List
response = s3.list_objects_v2(Bucket='${c.bucket}')
for obj in response.get('Contents', []):
    print(obj['Key'], obj['Size'])`;

const sdk = (c, s) => `const { S3Client, PutObjectCommand, ListObjectsV2Command } = require('@aws-sdk/client-s3');
const fs = require('fs');
const s3 = new S3Client({
  endpoint: '${c.endpoint}',
  region: '${c.region}',
  credentials: {
    accessKeyId: '${c.access_key_id}',
    secretAccessKey: '${s}',
  },
  forcePathStyle: true,
});
// Upload
await s3.send(new PutObjectCommand({
  Bucket: '${c.bucket}',
  Key: 'myfile.txt',
  Body: fs.readFileSync('myfile.txt'),
}));
// List
const { Contents } = await s3.send(new ListObjectsV2Command({
  Bucket: '${c.bucket}',
}));
Contents.forEach(obj => console.log(obj.Key, obj.Size));`;
