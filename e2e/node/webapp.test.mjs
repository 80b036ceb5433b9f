// Drives the homemq web app in Debian's Chromium with playwright-core on a
// phone-sized screen (run by TestWebAppInBrowser in e2e/webapp_test.go,
// which checks the result and the agent's pins). Prints one JSON line.
//
// env: CHROMIUM, BASE_URL, SPKI (the broker key Chromium trusts), ARTIFACTS
// (screenshot folder), ADMIN_JSON (token mint --json), BAD_TOKEN (a token
// with another token's signature), VIEWER_TOKEN, PAST
// (ms: after the admin's first token expired), DEVICE, PULSE, INPUT and NEW_HOME
// (home/agent/device; NEW_HOME's home comes with the first refresh).
import { join } from 'node:path';
import { closeAll, env, launch } from './chromium.mjs';

const [BASE, ARTIFACTS, DEVICE, PULSE] = [env('BASE_URL'), env('ARTIFACTS'), env('DEVICE'), env('PULSE')];
const out = { URLs: [], ConsoleErrors: [], Screenshots: [] };
const T = { timeout: 15_000 };

const context = await launch();

async function openPage(name) {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy|Trusted Type/i.test(m.text())) out.ConsoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => out.ConsoleErrors.push(`${name}: ${e.message}`));
  page.on('request', (r) => out.URLs.push(r.url()));
  page.on('websocket', (ws) => out.URLs.push(ws.url()));
  return page;
}

async function shot(page, name) {
  const path = join(ARTIFACTS, `webapp-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.Screenshots.push(path);
}

const device = (page, id) => page.locator(`[data-device="${id}"]`);
const [home, agentId, lampId] = DEVICE.split('/');
const cmdTopic = `homes/${home}/agents/${agentId}/devices/${lampId}/cmd`;

// forge seals a command with a random key (the token's kid, so only the
// signature is wrong) and publishes it through the page's console API.
const forge = (page, topic) => page.evaluate(async (topic) => {
  const { seal } = await import('/envelope.mjs');
  const key = crypto.getRandomValues(new Uint8Array(32));
  const env = await seal({ key, topic, kid: window.homemq.jti, msg: '{"action":"on"}' });
  return window.homemq.publish(topic, env);
}, topic);

try {
  // --- an admin pastes the output of token mint --json ---
  const admin = await openPage('admin');
  const resp = await admin.goto(BASE);
  out.CSP = resp.headers()['content-security-policy'];
  await admin.locator('#paste-form').waitFor();
  await shot(admin, 'signin');

  // clear messages for tokens that cannot work
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  await admin.fill('#token', `${b64({ alg: 'EdDSA' })}.${b64({ sub: 'user:ann', jti: 'old', exp: 1000, homes: { h1: 'admin' } })}.c2ln`);
  await admin.click('#paste-form button[type=submit]');
  out.ExpiredError = await admin.locator('#signin-error', { hasText: 'expired' }).textContent(T);
  await admin.fill('#token', env('BAD_TOKEN'));
  await admin.click('#paste-form button[type=submit]');
  out.BadTokenError = await admin.locator('#signin-error', { hasText: 'refused' }).textContent(T);
  await shot(admin, 'signin-refused');

  await admin.fill('#token', env('ADMIN_JSON'));
  await admin.click('#paste-form button[type=submit]');
  await admin.locator('#conn[data-state="connected"]').waitFor(T);
  await admin.locator(`[data-agent="${home}/${agentId}"] .status[data-status="online"]`).waitFor(T);
  const lamp = device(admin, DEVICE);
  await lamp.locator('.state', { hasText: 'off' }).waitFor(T);
  await device(admin, PULSE).locator('button[data-action="unlock"]:enabled').waitFor(T);
  await device(admin, env('INPUT')).locator('.state').waitFor(T);
  out.InputButtons = await device(admin, env('INPUT')).locator('button').count();
  out.ExpiryText = await admin.textContent('#expiry');
  const homeIds = (page) => page.locator('[data-home]').evaluateAll((els) => els.map((e) => e.dataset.home));
  out.HomesBefore = await homeIds(admin);
  await shot(admin, 'admin');

  await lamp.locator('button[data-action="on"]').click();
  await lamp.locator('.result', { hasText: 'Turned on at' }).waitFor(T);
  await admin.locator(`[data-device="${DEVICE}"][data-state="on"]`).waitFor(T);
  out.LampAfterOn = (await lamp.locator('.state').textContent()).trim();
  out.OnResult = await lamp.locator('.result').textContent();

  const door = device(admin, PULSE);
  await door.locator('button[data-action="unlock"]').click();
  await door.locator('button[data-action="unlock"][data-armed="true"]').waitFor(T);
  await door.locator('button[data-action="unlock"]').click();
  await door.locator('.result', { hasText: 'Unlocked at' }).waitFor(T);
  out.PulseResult = await door.locator('.result').textContent();
  await shot(admin, 'admin-after-commands');

  out.ForgedAdmin = await forge(admin, cmdTopic);
  out.ForgedAdminLog = await admin.locator('#log li.error', { hasText: 'console publish' }).first().textContent(T);
  await shot(admin, 'admin-forged-refused');

  // --- a viewer signs in by exchanging a homemq token at /api/token ---
  const viewer = await openPage('viewer');
  await viewer.goto(BASE);
  await viewer.selectOption('#credtype', 'urn:ietf:params:oauth:token-type:jwt');
  await viewer.fill('#credential', env('VIEWER_TOKEN'));
  await viewer.click('#exchange-form button[type=submit]');
  await viewer.locator('#conn[data-state="connected"]').waitFor(T);
  await viewer.locator(`[data-device="${DEVICE}"][data-state="on"]`).waitFor(T);
  out.ViewerState = (await device(viewer, DEVICE).locator('.state').textContent()).trim();
  out.ViewerButtons = await viewer.locator('button.cmd').count();
  out.ViewerNote = await viewer.locator(`[data-home="${home}"] .note`).textContent();
  out.ForgedViewer = await forge(viewer, cmdTopic);
  out.ViewerLog = await viewer.locator('#log li.error', { hasText: 'console publish' }).first().textContent(T);
  await shot(viewer, 'viewer');

  // --- the admin's token is refreshed before it runs out ---
  await admin.bringToFront();
  await admin.locator('#refreshes', { hasText: /^[1-9]/ }).waitFor({ state: 'attached', timeout: 30_000 });
  const wait = Number(env('PAST')) - Date.now();
  if (wait > 0) await admin.waitForTimeout(wait);
  out.Refreshes = Number(await admin.textContent('#refreshes'));
  const fan = device(admin, env('NEW_HOME'));
  await fan.locator('.state', { hasText: 'off' }).waitFor(T);
  out.NewHomeState = (await fan.locator('.state').textContent()).trim();
  out.NewHomeRole = await admin.locator(`[data-home="${env('NEW_HOME').split('/')[0]}"] .role`).textContent();
  out.HomesAfter = await homeIds(admin);
  out.ConnAfterExp = await admin.getAttribute('#conn', 'data-state');
  await lamp.locator('button[data-action="off"]').click();
  await lamp.locator('.result', { hasText: 'Turned off at' }).waitFor(T);
  await admin.locator(`[data-device="${DEVICE}"][data-state="off"]`).waitFor(T);
  out.ToggleResult = await lamp.locator('.result').textContent();
  out.LampAfterOff = (await lamp.locator('.state').textContent()).trim();
  await shot(admin, 'admin-refreshed');

  // nothing of the session was stored
  out.Storage = 0;
  for (const page of [admin, viewer]) {
    out.Storage += await page.evaluate(() => localStorage.length + sessionStorage.length + (document.cookie ? 1 : 0));
  }
  const cookies = await context.cookies();
  out.Storage += cookies.length;
} catch (e) {
  out.Error = String(e.stack || e);
  for (const page of context.pages()) {
    await page.screenshot({ path: join(ARTIFACTS, `webapp-failure-${context.pages().indexOf(page)}.png`), fullPage: true }).catch(() => {});
  }
} finally {
  await closeAll();
}
console.log(JSON.stringify(out));
if (out.Error) {
  console.error(out.Error);
  process.exit(1);
}
