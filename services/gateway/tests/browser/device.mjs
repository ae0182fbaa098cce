// The dashboard's device page in headless Debian chromium (playwright-core).
// Usage: node device.mjs <url-with-#device=id> <screenshot.png> <user-data-dir> <token>
// Prints "connected" once every SSE stream is open and the device page shows the
// inventory; then sends two commands with the form (write token), each until the live
// command stream shows it succeeded, takes the screenshot and prints "result <json>".
// Both orders a real browser can meet are forced here, so that neither is left to chance:
// - power_on goes while the streams reopen with a stream token (typing the token and
//   going on to the form changes it); the token answers are held back until the command
//   succeeded, so its events come only over the streams being replaced;
// - power_off's POST answer ("queued") is held back until the stream showed it succeeded:
//   the older answer must not replace the newer state.
import { chromium } from "playwright-core";

const [url, shot, userDataDir, token] = process.argv.slice(2);

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1400, height: 1400 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll("#streams .dot").length >= 5 && document.querySelectorAll("#streams .dot:not(.on)").length === 0, null, { timeout: 20000 });
  await page.waitForSelector('#device-info td[data-field="firmware"]', { timeout: 45000 });
  console.log("connected");
  const succeeded = (name) => page.waitForFunction((n) => [...document.querySelectorAll("#device-commands tbody tr[data-command]")]
    .some((r) => r.cells[1].textContent === n && r.cells[2].textContent === "succeeded"), name, { timeout: 45000 });
  let tokenAsked, release;
  const asked = new Promise((r) => { tokenAsked = r; });
  const released = new Promise((r) => { release = r; });
  await page.route("**/v1/stream/token", async (route) => { tokenAsked(); await released; await route.continue(); });
  await page.fill("#token", token);
  await page.fill("#cmd-name", "power_on");  // the token field's change: the streams reopen
  await asked;
  await page.fill("#cmd-params", '{"level": 2}');
  await page.click("#cmd-send");
  await succeeded("power_on");
  release();  // (the route stays: it lets every later token request through)
  await page.route("**/v1/devices/*/commands", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    const response = await route.fetch();
    await succeeded("power_off");
    await route.fulfill({ response });
  });
  await page.fill("#cmd-name", "power_off");
  await page.fill("#cmd-params", "");
  await page.click("#cmd-send");
  await page.waitForFunction(() => document.getElementById("msg").textContent === "command power_off queued", null, { timeout: 45000 });
  await page.waitForSelector("#devices tr[data-device].sel", { timeout: 10000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot, fullPage: true });
  const result = await page.evaluate(() => {
    const field = (k) => { const td = document.querySelector(`#device-info td[data-field="${k}"]`); return td ? td.textContent : null; };
    const rows = [...document.querySelectorAll("#device-commands tbody tr[data-command]")];
    return {
      title: document.getElementById("device-title").textContent,
      online: document.getElementById("device-online").textContent,
      firmware: field("firmware"),
      hardware: field("hardware"),
      points: field("points"),
      commands: rows.map((r) => [...r.cells].slice(1, 4).map((c) => c.textContent)),
      verdicts: document.querySelectorAll("#device-verdicts tbody tr td.state-running, #device-verdicts tbody tr td.state-stopped").length,
      listed: [...document.querySelectorAll("#devices tr[data-device]")].map((r) => r.dataset.device),
    };
  });
  console.log("result " + JSON.stringify({ ...result, errors }));
} catch (e) {
  console.error(String(e), JSON.stringify(errors));
  throw e;
} finally {
  await context.close();
}
