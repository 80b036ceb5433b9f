// Opens an invite link in Debian's Chromium on a phone-sized screen: the
// page reaches the home without pasting anything, stays signed in across a
// reload (the HttpOnly sign-in cookie, which no script can read), sends a
// command, and is signed out when the admin removes the device's sign-in;
// the same invite does not work twice. Run by TestWebAppInvite
// (e2e/webapp_invite_test.go). Prints one JSON line.
//
// Then an admin creates an invite in the app (link and QR code) and a
// viewer signs in with it.
//
// env: CHROMIUM, BASE_URL, SPKI, ARTIFACTS, INVITE (the link), ADMIN_JSON
// (token mint --json of an admin of the home), CONTROL
// (POST /remove: the admin removes the sign-in), DEVICE (home/agent/device).
import { join } from 'node:path';
import { closeAll, env, launch } from './chromium.mjs';

const out = { ConsoleErrors: [], Screenshots: [], URLs: [] };
const T = { timeout: 20_000 };
const DEVICE = env('DEVICE');
async function shot(page, name) {
  const path = join(env('ARTIFACTS'), `invite-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.Screenshots.push(path);
}

try {
  const phone = await launch();
  const page = await phone.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') out.ConsoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => out.ConsoleErrors.push(e.message));
  page.on('request', (r) => out.URLs.push(r.url()));
  await page.goto(env('INVITE'));
  await page.locator('#conn[data-state="connected"]').waitFor(T);
  out.AddressBar = page.url();
  out.Sub = await page.textContent('#sub');
  const dev = page.locator(`[data-device="${DEVICE}"]`);
  await dev.locator('button[data-action="on"]:enabled').waitFor(T);
  await shot(page, '1-home');

  // a reload keeps the sign-in (the cookie), and commands work
  await page.reload();
  await page.locator('#conn[data-state="connected"]').waitFor(T);
  out.AfterReload = await page.textContent('#sub');
  await dev.locator('button[data-action="on"]:enabled').click(T);
  await dev.locator('.result[data-kind="ok"]').waitFor(T);
  out.Result = (await dev.locator('.result').textContent()).trim();
  out.ScriptCookies = await page.evaluate(() => document.cookie);
  out.Storage = await page.evaluate(() => localStorage.length + sessionStorage.length);
  out.Cookies = (await phone.cookies()).map((c) => ({ Name: c.name, Path: c.path, HttpOnly: c.httpOnly, Secure: c.secure, SameSite: c.sameSite }));
  await shot(page, '2-after-reload');

  // the admin removes this phone's sign-in: the next start shows the sign-in form
  await fetch(`${env('CONTROL')}/remove`, { method: 'POST' });
  const errors = out.ConsoleErrors.length;
  await page.reload();
  await page.locator('#signin-error:not([hidden])').waitFor(T);
  out.AfterRemove = (await page.locator('#signin-error').textContent()).trim();
  out.ConsoleErrors.splice(errors); // the refused refresh (401) is expected here
  await shot(page, '3-removed');
  await phone.close();

  // the same invite on another phone: refused in plain words
  const other = await launch();
  const page2 = await other.newPage();
  await page2.goto(env('INVITE'));
  await page2.locator('#signin-error:not([hidden])').waitFor(T);
  out.SecondUse = (await page2.locator('#signin-error').textContent()).trim();
  await shot(page2, '4-used-twice');
  await other.close();

  // an admin invites from the app: a link and its QR code, which a viewer opens
  const desk = await launch();
  const admin = await desk.newPage();
  admin.on('console', (m) => {
    if (m.type() === 'error') out.ConsoleErrors.push(`admin: ${m.text()}`);
  });
  await admin.goto(env('BASE_URL'));
  await admin.fill('#token', env('ADMIN_JSON'));
  await admin.click('#paste-form button[type=submit]');
  await admin.locator('#conn[data-state="connected"]').waitFor(T);
  const box = admin.locator(`[data-invite="${DEVICE.split('/')[0]}"]`);
  await box.locator('summary').click();
  await box.locator('select').selectOption('viewer');
  await box.locator('button', { hasText: 'Create invite link' }).click();
  await box.locator('.invite-link').waitFor(T);
  const link = await box.locator('.invite-link').inputValue();
  out.AppInviteText = (await box.locator('.invite-out p').first().textContent()).trim();
  out.AppInviteQR = await box.locator('.invite-qr').evaluate((img) => img.complete && img.naturalWidth > 100);
  out.AppInviteOverflow = await admin.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(admin, '5-admin-invites');
  const third = await launch();
  const page3 = await third.newPage();
  await page3.goto(link);
  await page3.locator('#conn[data-state="connected"]').waitFor(T);
  await page3.locator(`[data-device="${DEVICE}"] .state`).waitFor(T);
  out.AppInviteRole = (await page3.locator('[data-home] .role').first().textContent()).trim();
  out.AppInviteButtons = await page3.locator('button.cmd').count();
  out.AppInviteUser = await page3.textContent('#sub');
  await shot(page3, '6-viewer-by-app-invite');

  // the admin sees that phone in the home's list and signs it out
  await box.locator('button', { hasText: 'Show signed-in phones' }).click();
  const row = box.locator('.phones li', { hasText: out.AppInviteUser });
  await row.waitFor(T);
  out.PhoneListed = (await row.textContent()).trim();
  await row.locator('button', { hasText: 'Sign out' }).click();
  await row.filter({ hasText: 'signed out' }).waitFor(T);
  await shot(admin, '7-admin-signed-a-phone-out');
  await desk.close();
  const before3 = out.ConsoleErrors.length;
  await page3.reload();
  await page3.locator('#signin-error:not([hidden])').waitFor(T);
  out.AppRemoved = (await page3.locator('#signin-error').textContent()).trim();
  out.ConsoleErrors.splice(before3); // the refused refresh (401) is expected here
  await third.close();
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
