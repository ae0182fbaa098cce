// Operator labels on the dashboard in headless Debian chromium (playwright-core).
// Usage: node label.mjs <url> <screenshot.png> <user-data-dir> <token>
// Prints "connected" once every SSE stream is open; reads the number of verdicts the test
// pushed; waits for them, clicks the first not-ok verdict in the table, waits for the label
// bar to find its archived verdict, clicks "false alarm", waits for the stored label,
// takes the screenshot and prints "result <json>".
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, shot, userDataDir, token] = process.argv.slice(2);
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
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.waitForFunction(() => document.querySelectorAll("#streams .dot").length >= 4 && document.querySelectorAll("#streams .dot:not(.on)").length === 0, null, { timeout: 20000 });
  console.log("connected");
  const expected = Number(await nextLine());
  await page.waitForFunction((n) => Number(document.getElementById("verdict-count").dataset.count) >= n, expected, { timeout: 30000 });
  const row = page.locator("#verdicts tbody tr td.state-stopped").first();
  await row.click();
  await page.waitForFunction(() => document.getElementById("label-bar").dataset.id, null, { timeout: 20000 });
  await page.click("#btn-false");
  await page.waitForFunction(() => document.getElementById("label-state").dataset.stored === "ok", null, { timeout: 20000 });
  await page.screenshot({ path: shot, fullPage: true });
  const result = await page.evaluate(() => ({
    id: Number(document.getElementById("label-bar").dataset.id),
    state: document.getElementById("label-state").textContent,
    title: document.getElementById("detail-title").textContent,
    options: [...document.querySelectorAll("#relabel-select option")].map((o) => o.value),
  }));
  console.log("result " + JSON.stringify({ ...result, errors }));
} finally {
  await context.close();
  stdin.close();
}
