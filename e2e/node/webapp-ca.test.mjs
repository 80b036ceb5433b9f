// Opens the homemq web app's sign-in screen in Debian's Chromium on a
// phone-sized screen and follows its link to the CA install page (run by
// TestCAPageFromSignIn in e2e/catrust_test.go). Prints one JSON line.
//
// env: CHROMIUM, BASE_URL, SPKI (the broker key Chromium trusts), ARTIFACTS
// (screenshot folder).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const [BASE, ARTIFACTS] = [env('BASE_URL'), env('ARTIFACTS')];
const out = { ConsoleErrors: [] };
const T = { timeout: 15_000 };

const profile = mkdtempSync(join(tmpdir(), 'homemq-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${env('SPKI')}`],
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
});
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
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
if (out.Error) {
  console.error(out.Error);
  process.exit(1);
}
