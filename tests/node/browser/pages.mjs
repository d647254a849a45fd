// The portal and the console in headless Chromium (Debian's), driven by
// playwright-core, against the real gateway that tests/browser.rs starts.
// Every step asserts what a person would see; the browser's console errors
// and page errors are collected and must stay empty. Screenshots of the
// main views, at desktop and phone width, go to $SCREENSHOTS.
//
// Env: PUBLIC (http://127.0.0.1:port), ADMIN (the admin listener),
// CHROMIUM (the browser binary), SCREENSHOTS (a folder).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { PUBLIC, ADMIN, CHROMIUM = "/usr/bin/chromium", SCREENSHOTS } = process.env;
const IMAGE_KEY = "kikaku_demo_key";
const STORAGE_KEY = "kikaku_s3_demo_key";
const SECRET = "kikaku-demo-secret-key-for-local-use-only";
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const problems = [];
const summary = {};
mkdirSync(SCREENSHOTS, { recursive: true });

const step = (name) => console.error(`browser: ${name}`);

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: PUBLIC });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ADMIN });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => d.accept());

  const shoot = async (name) => {
    await page.screenshot({ path: `${SCREENSHOTS}/${name}-desktop.png`, fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: `${SCREENSHOTS}/${name}-phone.png`, fullPage: true });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= PHONE.width + 1, `${name}: the page is ${wide}px wide at phone width`);
    await page.setViewportSize(DESKTOP);
  };
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
  const logIn = async (key) => {
    await page.fill("#key", key);
    await page.press("#key", "Enter");
    await page.waitForSelector("#app:not([hidden])");
  };
  const logOut = async () => {
    await page.click("#logout");
    await page.waitForSelector("#login:not([hidden])");
  };

  // --- The console: a key made there works on the public API. ---
  step("console log in");
  await page.goto(`${ADMIN}/console`);
  await page.fill("#token", "admin_demo_token");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#stats .stat");
  await shoot("console-stats");

  step("console creates a key");
  await page.click("[data-tab=keys]");
  await page.waitForSelector("#key-table");
  await page.selectOption("#new-type", "image");
  await page.fill("#new-owner", "Browser Test Owner With A Rather Long Name That Must Wrap Nicely");
  await page.fill("#new-email", "browser@example.com");
  await page.fill("#new-quota", "50");
  await page.fill("#new-rate", "30");
  await page.click("#new-go");
  const created = (await page.textContent("#created-key", { timeout: 10000 })).trim();
  assert.match(created, /^kikaku_[A-Za-z0-9_-]+$/);
  const usage = (key) => fetch(`${PUBLIC}/v1/usage`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal((await usage(created)).status, 200, "the new key works on the public API");
  await page.waitForSelector("#key-table >> text=Browser Test Owner");
  await shoot("console-keys");

  step("console suspends and resumes it");
  const name = "Browser Test Owner With A Rather Long Name That Must Wrap Nicely";
  await page.click(`button[aria-label="Suspend ${name}"]`);
  await page.waitForSelector(`button[aria-label="Resume ${name}"]`);
  let status = 0;
  for (let i = 0; i < 50 && status !== 403; i += 1) {
    status = (await usage(created)).status;
    if (status !== 403) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 403, "a suspended key is refused");
  await page.click(`button[aria-label="Resume ${name}"]`);
  await page.waitForSelector(`button[aria-label="Suspend ${name}"]`);

  step("console sets quota and rate limit");
  await page.fill(`input[aria-label="Quota of ${name}"]`, "7");
  await page.fill(`input[aria-label="Rate limit of ${name}"]`, "5");
  await page.click(`tr:has(button[aria-label="Suspend ${name}"]) >> text=Save`);
  await page.waitForSelector(`#key-table tr:has-text("${name}") >> text=0 / 7`);
  let seen = {};
  for (let i = 0; i < 50 && seen.quota_limit !== 7; i += 1) {
    seen = await (await usage(created)).json();
    if (seen.quota_limit !== 7) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(seen.quota_limit, 7, "the public API sees the new quota");

  step("console browses a bucket");
  await page.click("[data-tab=buckets]");
  await page.waitForSelector("#bucket-table");
  await page.click("button:has-text('Browse demo')");
  await page.waitForSelector("#object-table >> text=console/seen.txt");
  await shoot("console-buckets");

  step("console presigns a URL");
  await page.click("[data-tab=presigned]");
  const owner = await page.evaluate(async () => {
    const r = await fetch("/admin/v1/buckets", { headers: { Authorization: `Bearer ${sessionStorage.getItem("kikaku.admin")}` } });
    return (await r.json()).buckets.find((b) => b.name === "demo").owner;
  });
  await page.fill("#ps-owner", owner);
  await page.fill("#ps-bucket", "demo");
  await page.fill("#ps-key", "console/seen.txt");
  await page.click("form >> text=Create URL");
  const presigned = (await page.textContent("#presigned-url")).trim();
  assert.equal(await (await fetch(presigned)).text(), "seen by the console\n");
  await page.waitForSelector("#presigned-table >> text=console/seen.txt");

  // --- The portal, with the image key. ---
  step("portal: / redirects, image key logs in");
  await page.goto(`${PUBLIC}/`);
  assert.equal(new URL(page.url()).pathname, "/portal");
  await logIn(IMAGE_KEY);
  await page.waitForSelector("#usage .stat");
  assert.match(await page.textContent("#usage"), /Images used/);

  step("portal generates an image");
  await page.selectOption("#gen-model", "seedream-4.0");
  const sizes = await page.$$eval("#gen-size option", (o) => o.map((x) => x.value));
  assert.deepEqual(sizes, ["1K", "2K", "4K", "custom"], "4.0's presets");
  await page.selectOption("#gen-model", "seedream-4.5");
  await page.selectOption("#gen-size", "custom");
  await page.fill("#gen-custom", "1920x1920");
  await page.fill("#gen-prompt", "A lighthouse at dawn, in the browser test");
  assert.equal(await page.textContent("#gen-count"), "41 / 10000");
  await page.fill("#gen-batch", "2");
  await page.click("#gen-go");
  await page.waitForSelector("#gen-results img", { timeout: 30000 });
  await page.waitForFunction(() => [...document.querySelectorAll("#gen-results img")].every((i) => i.complete && i.naturalWidth > 0));
  const shown = await page.$$eval("#gen-results img", (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
  assert.ok(shown.length >= 1 && shown.every(([w, h]) => w === 1920 && h === 1920), JSON.stringify(shown));

  step("portal gallery shows the kept copies");
  for (let i = 0; i < 50; i += 1) {
    await page.click("[data-tab=image]");
    await page.waitForSelector("#gallery h2");
    if ((await page.$$("#gallery img")).length >= shown.length) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok((await page.$$("#gallery img")).length >= shown.length, "gallery copies");
  await page.waitForFunction(() => [...document.querySelectorAll("#gallery img")].every((i) => i.complete && i.naturalWidth > 0));

  step("portal logs filter by date");
  await page.waitForSelector("#logs-table table");
  const today = new Date().toISOString().slice(0, 10);
  await page.fill("#logs-start", today);
  await page.fill("#logs-end", today);
  await page.click("#logs-filter");
  await page.waitForSelector("#logs-table tbody >> text=seedream-4.5");
  const later = new Date(Date.now() + 3 * 86400e3).toISOString().slice(0, 10);
  await page.fill("#logs-start", later);
  await page.fill("#logs-end", later);
  await page.click("#logs-filter");
  await page.waitForSelector("#logs-table >> text=No requests in this range.");
  await page.fill("#logs-start", "");
  await page.fill("#logs-end", "");
  await page.click("#logs-filter");
  await page.waitForSelector("#logs-table tbody >> text=seedream-4.5");
  await shoot("portal-image");

  step("portal: the storage tab with an image key");
  await page.click("[data-tab=storage]");
  assert.equal(
    await page.textContent("#wrong-type"),
    "You are logged in with an AI Image key. Please login with an S3 Storage API key (kikaku_s3_xxx) to access this feature.",
  );
  await logOut();

  // --- The portal, with the storage key. ---
  step("portal: storage key, upload, list, download, delete");
  await logIn(STORAGE_KEY);
  await page.click("[data-tab=storage]");
  await page.waitForSelector("#file-table");
  const content = "uploaded from the browser test\n".repeat(1000);
  await page.setInputFiles("#upload-file", { name: "browser note.txt", mimeType: "text/plain", buffer: Buffer.from(content) });
  await page.click("#upload-go");
  await page.waitForSelector("#file-table >> text=browser note.txt");
  assert.equal(await page.$eval("#files progress", (p) => p.value), 100);
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click("#file-table tr:has-text('browser note.txt') >> text=Download"),
  ]);
  assert.equal(download.suggestedFilename(), "browser note.txt");
  const chunks = [];
  for await (const c of await download.createReadStream()) chunks.push(c);
  assert.equal(Buffer.concat(chunks).toString(), content, "downloaded bytes");
  await page.click("#file-table >> text=console");
  await page.waitForSelector("#file-table >> text=seen.txt");
  await page.click(".crumbs >> text=All files");
  await page.waitForSelector("#file-table >> text=browser note.txt");

  step("portal: credentials revealed and copied");
  assert.ok(!(await page.textContent("#secret")).includes(SECRET), "hidden until revealed");
  assert.ok(!(await page.textContent("#credentials pre")).includes(SECRET));
  await page.click("#reveal");
  assert.equal(await page.textContent("#secret"), SECRET);
  assert.match(await page.textContent("#credentials pre"), new RegExp(`aws_secret_access_key ${SECRET}`));
  await page.click("#credentials dl >> button:has-text('Copy') >> nth=4");
  assert.equal(await clipboard(), SECRET);
  await page.click("#credentials dl >> button:has-text('Copy') >> nth=3");
  assert.equal(await clipboard(), "KIKAKUDEMOACCESSKEY0");
  await page.click("#reveal");
  await shoot("portal-storage");
  await page.click("#file-table tr:has-text('browser note.txt') >> text=Delete");
  await page.waitForSelector("#file-table >> text=browser note.txt", { state: "detached" });

  step("portal: the image tab with a storage key");
  await page.click("[data-tab=image]");
  assert.equal(
    await page.textContent("#wrong-type"),
    "You are logged in with an S3 Storage key. Please login with an AI Image API key (kikaku_xxx) to access this feature.",
  );
  await logOut();

  step("portal: rotate the console's key and log in with the new one");
  await logIn(created);
  await page.click("[data-tab=account]");
  await page.click("text=Reset my key");
  const rotated = (await page.textContent("#new-key")).trim();
  assert.notEqual(rotated, created);
  await shoot("portal-account");
  await logOut();
  await logIn(rotated);
  await page.waitForSelector("#usage .stat");
  summary.old_key = created;
  summary.new_key = rotated;

  // Keyboard: after logging out the key field has the focus, and Tab
  // moves to the button that logs in.
  await logOut();
  assert.equal(await page.evaluate(() => document.activeElement.id), "key");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Log in");
  await shoot("portal-login");
  await context.close();
} finally {
  await browser.close();
}

assert.deepEqual(problems, [], "no console errors or page errors");
console.log(JSON.stringify(summary));
