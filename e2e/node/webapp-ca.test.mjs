// Opens the homemq web app's sign-in screen in Debian's Chromium on a
// phone-sized screen and follows its link to the CA install page (run by
// TestCAPageFromSignIn in e2e/catrust_test.go). Prints one JSON line.
//
// env: CHROMIUM, BASE_URL, SPKI (the broker key Chromium trusts), ARTIFACTS
// (screenshot folder).
import { join } from 'node:path';
import { closeAll, env, launch } from './chromium.mjs';

const [BASE, ARTIFACTS] = [env('BASE_URL'), env('ARTIFACTS')];
const out = { ConsoleErrors: [] };
const T = { timeout: 15_000 };

const context = await launch();
try {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) out.ConsoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => out.ConsoleErrors.push(e.message));
  await page.goto(BASE, T);
  await page.locator('#signin').waitFor(T);
  const link = page.getByRole('link', { name: "Install the home's certificate" });
  const [resp] = await Promise.all([page.waitForResponse((r) => new URL(r.url()).pathname === '/ca', T), link.click()]);
  out.Status = resp.status();
  out.CSP = resp.headers()['content-security-policy'] || '';
  await page.locator('#fingerprint').waitFor(T);
  out.URL = page.url();
  out.Title = await page.title();
  out.Fingerprint = (await page.locator('#fingerprint').textContent()).trim();
  out.IOS = await page.getAttribute('#ios', 'href');
  out.Android = await page.getAttribute('#android', 'href');
  out.PEM = await page.getAttribute('#pem', 'href');
  await page.screenshot({ path: join(ARTIFACTS, 'webapp-ca.png'), fullPage: true });
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
