// Opens the labeling page in Debian's headless Chromium (playwright-core), signs in with a
// labeler key, waits until a task is shown, and prints what the page holds as one JSON line:
// whether any injected script ran (a dialog, window.__xss) or any markup was parsed from the
// API's strings (inline handlers, svg/iframe/extra img or script elements), and the texts.
//
// env: BASE_URL, API_KEY, PLAYWRIGHT_CORE (path to the module), CHROMIUM (default /usr/bin/chromium)
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const profile = mkdtempSync(join(tmpdir(), "hone-xss-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
});
const report = { dialogs: [], errors: [], csp_violations: 0 };
try {
  const page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(20000);
  page.on("dialog", async (d) => { report.dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => report.errors.push(e.message));
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) report.csp_violations += 1;
  });
  await page.goto(`${process.env.BASE_URL}/label`);
  await page.fill("#api-key", process.env.API_KEY);
  await page.press("#api-key", "Enter");
  await page.waitForFunction(() => document.querySelector("#reasons li") !== null);
  await page.waitForFunction(() => document.querySelectorAll("#choices button").length > 0);
  Object.assign(report, await page.evaluate(() => {
    const all = [...document.querySelectorAll("*")];
    const texts = (selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent);
    return {
      xss: window.__xss === undefined ? null : window.__xss,
      inline_handlers: all.filter((e) => [...e.attributes].some((a) => a.name.startsWith("on")))
        .map((e) => e.outerHTML.slice(0, 200)),
      elements: Object.fromEntries(["img", "script", "svg", "iframe", "object", "embed", "style",
        "a", "form", "math", "b"].map((t) => [t, document.getElementsByTagName(t).length])),
      guess: document.getElementById("guess").textContent,
      top_k: texts("#top-k li"),
      reasons: texts("#reasons li"),
      choices: texts("#choices button span"),
      meta: document.getElementById("meta").textContent,
      title: document.title,
    };
  }));
} catch (error) {
  report.errors.push(`probe: ${error.message}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(report)}\n`);
