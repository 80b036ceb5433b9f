// Opens the invite link printed by homemq serve --demo in Debian's
// Chromium on a phone-sized screen and switches the demo lamp off and on:
// nothing is pasted. Run by TestQuickstartFirstMinute (e2e/quickstart_test.go).
// Prints one JSON line.
//
// env: CHROMIUM, LINK (the printed invite link), SPKI (the broker key Chromium
// trusts), ARTIFACTS (screenshot folder).
import { join } from 'node:path';
import { closeAll, env, launch } from './chromium.mjs';

const out = { ConsoleErrors: [], Screenshots: [] };
const T = { timeout: 20_000 };
const context = await launch();
try {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') out.ConsoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => out.ConsoleErrors.push(e.message));
  await page.goto(env('LINK'));
  await page.locator('#conn[data-state="connected"]').waitFor(T);
  out.AddressBar = page.url();
  out.Sub = await page.textContent('#sub');
  await page.locator('[data-agent="demo/demo-pi"] .status[data-status="online"]').waitFor(T);
  const lamp = page.locator('[data-device="demo/demo-pi/lamp"]');
  await lamp.locator('button[data-action="off"]:enabled').click(T);
  await page.locator('[data-device="demo/demo-pi/lamp"][data-state="off"]').waitFor(T);
  await lamp.locator('button[data-action="on"]:enabled').click(T);
  await lamp.locator('.result[data-kind="ok"]').waitFor(T);
  out.Result = (await lamp.locator('.result').textContent()).trim();
  await page.locator('[data-device="demo/demo-pi/lamp"][data-state="on"]').waitFor(T);
  out.DoorState = (await page.locator('[data-device="demo/demo-pi/door"] .state').textContent()).trim();
  const path = join(env('ARTIFACTS'), 'quickstart-link.png');
  await page.screenshot({ path, fullPage: true });
  out.Screenshots.push(path);
} catch (e) {
  out.Error = String(e.stack || e);
} finally {
  await closeAll();
}
console.log(JSON.stringify(out));
if (out.Error) {
  console.error(out.Error);
  process.exit(1);
}
