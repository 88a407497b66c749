// Plays the ladder's page (index.html, as `lpgpu demo --serve` serves it) in
// headless Chromium (Debian's /usr/bin/chromium, a fresh profile): picks
// each rendition in turn and waits for the video to pass 1 s of it. Reports
// one JSON line: per rendition the time reached and the picture size, the
// page's table, console errors, and the screenshot's size.
//
// Usage: node player_page.mjs URL SCREENSHOT.png
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "lpgpu-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
  viewport: { width: 1000, height: 760 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  const options = await page.$$eval("#picker option", (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
  const played = [];
  for (const option of options.filter((o) => o.value !== "auto")) {
    await page.selectOption("#picker", option.value);
    const reached = await page.waitForFunction(() => {
      const v = document.getElementById("video");
      return v.currentTime > 1 ? { time: v.currentTime, width: v.videoWidth, height: v.videoHeight } : false;
    }, null, { timeout: 30000, polling: 100 });
    played.push({ rendition: option.text, ...(await reached.jsonValue()) });
  }
  const table = await page.$$eval("table tr", (rows) => rows.slice(1).map((r) => [...r.cells].map((c) => c.textContent)));
  const hls = await page.evaluate(() => Boolean(window.Hls && window.Hls.isSupported()));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ played, table, hls, console_errors: errors, screenshot_bytes: statSync(screenshot).size }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
