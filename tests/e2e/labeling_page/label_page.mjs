// Drives the labeling page in Debian's headless Chromium with playwright-core, keyboard only:
// label, mark ambiguous, undo, label again. Prints what it saw as one JSON line on stdout.
//
// env: BASE_URL, API_KEY, SCREENSHOT_DIR, PLAYWRIGHT_CORE (path to the module),
//      CHROMIUM (default /usr/bin/chromium)
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const base = process.env.BASE_URL;
const key = process.env.API_KEY;
const shots = process.env.SCREENSHOT_DIR;
const profile = mkdtempSync(join(tmpdir(), "hone-chromium-"));

// A fresh profile directory (Playwright hands it to Chromium as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1200, height: 860 },
});

const problems = [];
const seen = { order: [], progress: "", reasons: [], guess: "", focus: "", step: "" };
const page = browser.pages()[0] || (await browser.newPage());
page.setDefaultTimeout(15000);
page.on("console", (m) => {
  // Failed loads are reported with their URL by the response handler below.
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
    problems.push(`console: ${m.text()}`);
  }
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });

async function step(name, action) {
  seen.step = name;
  return action();
}

const shownTask = () => page.locator("#image").getAttribute("data-task-id");

async function nextTask(previous) {
  await page.waitForFunction((prev) => {
    const img = document.getElementById("image");
    return !img.hidden && img.dataset.taskId && img.dataset.taskId !== prev;
  }, previous);
  return shownTask();
}

const shows = (taskId) =>
  page.waitForFunction((t) => document.getElementById("image").dataset.taskId === t, taskId);
const says = (text) =>
  page.waitForFunction((t) => document.getElementById("status").textContent.includes(t), text);
const progressSays = (pattern) =>
  page.waitForFunction(
    (p) => new RegExp(p).test(document.getElementById("progress").textContent), pattern);

try {
  await step("open the page", () => page.goto(`${base}/label`));
  await step("enter the key", async () => {
    await page.keyboard.type(key); // the key field has focus on load: no mouse needed
    await page.keyboard.press("Enter");
  });
  const t1 = await step("first image", () => nextTask(null));
  seen.guess = await page.locator("#guess").textContent();
  seen.reasons = await page.locator("#reasons li").allTextContents();
  seen.focus = await page.evaluate(() => document.activeElement && document.activeElement.id);

  await step("press 1", () => page.keyboard.press("1"));
  const t2 = await step("second image", () => nextTask(t1));
  await step("saved T-shirt/top", () => says("Saved: T-shirt/top."));
  await step("press 8", () => page.keyboard.press("8"));
  const t3 = await step("third image", () => nextTask(t2));
  await step("saved Sneaker", () => says("Saved: Sneaker."));
  await step("press a", () => page.keyboard.press("a"));
  const t4 = await step("fourth image", () => nextTask(t3));
  await step("saved ambiguous", () => says("Saved: ambiguous."));
  await step("press z", () => page.keyboard.press("z"));
  await step("third image again", () => shows(t3));
  await step("undone", () => says("Undone: ambiguous."));
  await step("progress shown", () => progressSays("2 answers"));
  await page.screenshot({ path: join(shots, "labeling-page.png"), fullPage: true });

  await step("press 0", () => page.keyboard.press("0"));
  await step("fourth image again", () => shows(t4));
  await step("saved Ankle boot", () => says("Saved: Ankle boot."));
  await step("press a again", () => page.keyboard.press("a"));
  await step("moved on", () => page.waitForFunction(
    (t) => document.getElementById("image").dataset.taskId !== t, t4));
  await step("saved ambiguous again", () => says("Saved: ambiguous."));
  await step("final progress", () => progressSays("4 answers"));
  seen.progress = await page.locator("#progress").textContent();
  await page.screenshot({ path: join(shots, "labeling-page-done.png"), fullPage: true });
  seen.order = [t1, t2, t3, t4];
} catch (error) {
  problems.push(`driver, at "${seen.step}": ${error.message.split("\n")[0]}`);
  seen.status = await page.locator("#status").textContent().catch(() => null);
  seen.alert = await page.locator("#alert").textContent().catch(() => null);
  seen.progressNow = await page.locator("#progress").textContent().catch(() => null);
  await page.screenshot({ path: join(shots, "labeling-page-failure.png") }).catch(() => {});
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...seen, problems }));
