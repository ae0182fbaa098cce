// The dashboard's envelope view in headless Debian chromium (playwright-core).
// Usage: node envelope.mjs <url> <screenshot.png> <user-data-dir>
// Prints "connected" once every SSE stream is open; reads the number of verdicts the test
// pushed; waits for a curve card with its band and the highlighted stretch that left it,
// clicks that verdict in the table, waits for the detail view to show the same, takes the
// screenshot and prints "result <json>".
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, shot, userDataDir] = process.argv.slice(2);
const stdin = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once("line", resolve));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1400, height: 1200 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll("#streams .dot").length >= 4 && document.querySelectorAll("#streams .dot:not(.on)").length === 0, null, { timeout: 20000 });
  console.log("connected");
  const expected = Number(await nextLine());
  await page.waitForFunction((n) => Number(document.getElementById("verdict-count").dataset.count) >= n, expected, { timeout: 30000 });
  await page.waitForSelector("#curves .curve.bad polygon.band", { timeout: 45000 });
  await page.waitForSelector("#curves .curve.bad polyline.outside", { timeout: 45000 });
  const row = page.locator("#verdicts tbody tr", { hasText: "out_of_envelope" }).first();
  await row.click();
  await page.waitForSelector("#detail polygon.band", { timeout: 10000 });
  await page.waitForSelector("#detail polyline.outside", { timeout: 10000 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: shot, fullPage: true });
  const result = await page.evaluate(() => {
    const band = document.querySelector("#detail polygon.band");
    const stretch = document.querySelector("#detail polyline.outside");
    return {
      bandPoints: band ? band.getAttribute("points").trim().split(/\s+/).length : 0,
      stretchPoints: stretch ? stretch.getAttribute("points").trim().split(/\s+/).length : 0,
      zone: document.querySelectorAll("#detail rect.outside-zone").length,
      title: document.getElementById("detail-title").textContent,
      meta: document.getElementById("detail-meta").textContent,
      learning: [...document.querySelectorAll("#verdicts tbody tr")].filter((r) => r.textContent.includes("learning")).length,
      cardBands: document.querySelectorAll("#curves polygon.band").length,
    };
  });
  console.log("result " + JSON.stringify({ ...result, errors }));
} finally {
  await context.close();
  stdin.close();
}
