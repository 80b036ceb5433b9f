// Debian's Chromium for the web app's browser tests: one place for the
// launch flags this machine needs (no background networking: its closed
// network refuses those connections), the trusted broker key, the screen
// sizes, and the temporary profiles.
//
// env: CHROMIUM (the program), SPKI (the broker key Chromium trusts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** env returns the environment variable k, or throws if it is not set. */
export const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};

/** PHONE and DESKTOP are the screen sizes the tests use. */
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };

const launched = [];

/** launch opens a browser with a fresh profile at the given screen size. */
export async function launch(size = PHONE) {
  const profile = mkdtempSync(join(tmpdir(), 'homemq-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${env('SPKI')}`],
    ...size,
  });
  launched.push({ context, profile });
  return context;
}

/** closeAll closes every browser launch opened and removes its profile. */
export async function closeAll() {
  for (const { context, profile } of launched.splice(0)) {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}
