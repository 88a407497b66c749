// Opens lpgpu's status page (GET / on a metrics port) in headless Chromium
// (Debian's /usr/bin/chromium, a fresh profile) and reports what a person
// would see, as one JSON line: the role shown, whether it says ready, the
// pool members listed, console errors, and the screenshot's size.
//
// Usage: node status_page.mjs URL SCREENSHOT.png [EXPECTED_MEMBER_TEXT]
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, screenshot, expectedMember] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "lpgpu-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1100, height: 800 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  // The script has rendered /status once the role replaces the placeholder.
  await page.waitForFunction(() => document.getElementById("role").textContent !== "…", null, { timeout: 15000 });
  if (expectedMember) {
    await page.waitForFunction(
      (text) => document.getElementById("pool").textContent.includes(text), expectedMember, { timeout: 15000 });
  }
  const seen = await page.evaluate(() => ({
    role: document.getElementById("role").textContent,
    ready: document.getElementById("ready").textContent,
    slots: document.getElementById("slots").textContent,
    pool: document.getElementById("poolcard").hidden ? null : document.getElementById("pool").textContent,
    updated: document.getElementById("updated").textContent,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...seen, console_errors: errors, screenshot_bytes: statSync(screenshot).size }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
