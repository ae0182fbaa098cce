// Drive the dashboard in headless Debian chromium (playwright-core, no browser download).
// Usage: node dashboard.mjs <url> <screenshot.png> <user-data-dir> <token>
// Protocol on stdout, one line each: "connected" once every SSE stream is open; then the
// test pushes events and this script waits for them on the page, clicks Stop with the
// token, takes the screenshot and prints "result <json>".
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
  viewport: { width: 1400, height: 1000 },
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
  await page.waitForFunction((n) => Number(document.getElementById("verdict-count").dataset.count) >= n, expected, { timeout: 20000 });
  await page.waitForSelector("#curves .curve.bad polyline", { timeout: 10000 });
  await page.waitForSelector("#rollouts tr[data-rollout]", { timeout: 10000 });
  // the rollout page: its waves and each device's update
  await page.click("#rollouts tr[data-rollout]");
  await page.waitForFunction(() => !document.getElementById("rollout-page").hidden
    && document.querySelectorAll("#rollout-waves tbody tr").length === 2
    && document.querySelectorAll("#rollout-devices tbody tr td:nth-child(2)").length === 3, null, { timeout: 10000 });
  await page.waitForSelector("#alarms .alarm", { timeout: 10000 });
  await page.waitForFunction(() => document.querySelectorAll("#rate polyline").length >= 2, null, { timeout: 10000 });
  await page.fill("#token", token);
  // acknowledge one alarm with a note, from the dashboard
  await page.fill("#alarms .alarm input.ack-note", "checked on the line");
  await page.click("#alarms .alarm button[data-ack]");
  await page.waitForSelector("#alarms .alarm.acked", { timeout: 10000 });
  await page.click("#btn-stop");
  await page.waitForFunction(() => document.getElementById("ingest-state").textContent === "stopped", null, { timeout: 10000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot, fullPage: true });
  const result = await page.evaluate(() => ({
    verdicts: Number(document.getElementById("verdict-count").dataset.count),
    cards: document.querySelectorAll("#curves .curve").length,
    bad: document.querySelectorAll("#curves .curve.bad").length,
    lines: document.querySelectorAll("#rate polyline").length,
    rollouts: document.querySelectorAll("#rollouts tr[data-rollout]").length,
    rolloutWaves: document.querySelectorAll("#rollout-waves tbody tr").length,
    rolloutDevices: [...document.querySelectorAll("#rollout-devices tbody tr td:nth-child(2)")].map((td) => td.textContent),
    alarms: document.querySelectorAll("#alarms .alarm").length,
    acked: [...document.querySelectorAll("#alarms .alarm.acked")].map((e) => e.textContent),
    ingest: document.getElementById("ingest-state").textContent,
  }));
  console.log("result " + JSON.stringify({ ...result, errors }));
} finally {
  await context.close();
  stdin.close();
}
