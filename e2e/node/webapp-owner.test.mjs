// Drives the homemq web app as a home owner, in Debian's Chromium with
// playwright-core, on a phone (390×844) and a desktop (1280×800); run by
// TestWebAppHomeOwner in e2e/webapp_owner_test.go, which checks the result.
// Prints one JSON line.
//
// env: CHROMIUM, BASE_URL, SPKI (the broker key Chromium trusts), ARTIFACTS
// (screenshot folder), SIGNIN (token mint --json of an admin), CONTROL (the
// test's server: POST /kill and /revive the agent, GET /pins), AGENT
// (home/agent, whose devices are lamp, door, button and fan).
import { join } from 'node:path';
import { closeAll, DESKTOP, env, launch, PHONE } from './chromium.mjs';

const [BASE, ARTIFACTS, CONTROL, AGENT] = [env('BASE_URL'), env('ARTIFACTS'), env('CONTROL'), env('AGENT')];
const out = { ConsoleErrors: [], Screenshots: [] };
const T = { timeout: 15_000 };
const control = (path, method = 'POST') => fetch(CONTROL + path, { method }).then((r) => (method === 'GET' ? r.json() : r.text()));

async function shot(page, name) {
  const path = join(ARTIFACTS, `owner-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.Screenshots.push(path);
}

const SIZES = { Phone: PHONE, Desktop: DESKTOP };

try {
  for (const [size, opts] of Object.entries(SIZES)) {
    const name = size.toLowerCase();
    const context = await launch(opts);
    try {
      const page = await context.newPage();
      page.on('console', (m) => {
        if (m.type() === 'error' || /Content Security Policy|Trusted Type/i.test(m.text())) out.ConsoleErrors.push(`${name}: ${m.text()}`);
      });
      page.on('pageerror', (e) => out.ConsoleErrors.push(`${name}: ${e.message}`));
      const s = {};
      out[size] = s;
      await page.goto(BASE);
      await page.fill('#token', env('SIGNIN'));
      await page.click('#paste-form button[type=submit]');
      await page.locator('#conn[data-state="connected"]').waitFor(T);
      await page.locator(`[data-agent="${AGENT}"] .status[data-status="online"]`).waitFor(T);
      const dev = (id) => page.locator(`[data-device="${AGENT}/${id}"]`);
      const [door, lamp] = [dev('door'), dev('lamp')];
      await door.locator('button[data-action="unlock"]:enabled').waitFor(T);
      await lamp.locator('button[data-action="on"]:enabled').waitFor(T);
      await dev('fan').locator('button:enabled').first().waitFor(T);
      s.DoorState = (await door.locator('.state').textContent()).trim();
      s.DoorWho = await door.locator('.who').textContent();
      s.Overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
      s.DevicesPerRow = await page.locator(`[data-agent="${AGENT}"] .device`).evaluateAll((els) => new Set(els.map((e) => e.getBoundingClientRect().top)).size === 0 ? 0
        : els.filter((e) => Math.abs(e.getBoundingClientRect().top - els[0].getBoundingClientRect().top) < 2).length);
      await shot(page, `${name}-1-home`);

      // the door: one tap only asks; the second unlocks
      const before = (await control('/pins', 'GET')).door;
      await door.locator('button[data-action="unlock"]').click();
      await door.locator('button[data-action="unlock"][data-armed="true"]').waitFor(T);
      s.ArmedText = (await door.locator('button[data-action="unlock"]').textContent()).trim();
      await shot(page, `${name}-2-door-confirm`);
      await page.waitForTimeout(1000);
      s.DoorPinsAfterTap = (await control('/pins', 'GET')).door - before;
      await door.locator('button[data-action="unlock"]').click();
      await door.locator('.result[data-kind="ok"]').waitFor(T);
      s.DoorResult = (await door.locator('.result').textContent()).trim();
      await shot(page, `${name}-3-door-unlocked`);
      // the result gives way to the real state: the strike has locked again
      await door.locator('.result:empty').waitFor({ state: 'attached', ...T });
      s.DoorResultFaded = true;
      await page.locator(`[data-device="${AGENT}/door"][data-state="off"]`).waitFor(T);
      s.DoorAfter = (await door.locator('.state').textContent()).trim();

      // the lamp: an absolute on; the result, then the state
      const lampWas = await lamp.getAttribute('data-state');
      const action = lampWas === 'on' ? 'off' : 'on';
      if (action === 'off') { // the phone run left it on: turn it off first, then on
        await lamp.locator('button[data-action="off"]').click();
        await page.locator(`[data-device="${AGENT}/lamp"][data-state="off"]`).waitFor(T);
      }
      await lamp.locator('button[data-action="on"]').click();
      await lamp.locator('.result[data-kind="ok"]').waitFor(T);
      s.LampResult = (await lamp.locator('.result').textContent()).trim();
      await page.locator(`[data-device="${AGENT}/lamp"][data-state="on"]`).waitFor(T);
      s.LampAfter = (await lamp.locator('.state').textContent()).trim();
      await shot(page, `${name}-4-lamp-on`);

      // the agent dies: its devices turn stale and their buttons are disabled
      await control('/kill');
      await page.locator(`[data-agent="${AGENT}"] .status[data-status="offline"]`).waitFor(T);
      s.OfflineStatus = (await page.locator(`[data-agent="${AGENT}"] .status`).textContent()).trim();
      s.OfflineDisabled = await page.locator(`[data-agent="${AGENT}"] :is([data-device$="/lamp"], [data-device$="/door"]) button:disabled`).count();
      s.OfflineWhy = await lamp.locator('.why').textContent();
      s.OfflineStale = await lamp.getAttribute('data-stale');
      s.OfflineAge = await lamp.locator('.age').textContent();
      await shot(page, `${name}-5-agent-offline`);

      // and comes back
      await control('/revive');
      await page.locator(`[data-agent="${AGENT}"] .status[data-status="online"]`).waitFor({ timeout: 30_000 });
      await lamp.locator('button[data-action="on"]:enabled').waitFor(T);
      s.OnlineEnabled = await page.locator(`[data-agent="${AGENT}"] :is([data-device$="/lamp"], [data-device$="/door"]) button:enabled`).count();
      s.OnlineStale = await lamp.getAttribute('data-stale');
      await shot(page, `${name}-6-agent-back`);

      if (size === 'Phone') {
        // install-readiness: the manifest, the service worker, and what it cached
        out.Manifest = await page.evaluate(async () => {
          const href = document.querySelector('link[rel="manifest"]').href;
          const m = await (await fetch(href)).json();
          return { Name: m.name, Display: m.display, StartURL: m.start_url, Icons: (m.icons ?? []).length };
        });
        out.Worker = await page.evaluate(async () => {
          const reg = await Promise.race([navigator.serviceWorker.ready, new Promise((r) => setTimeout(() => r(null), 10_000))]);
          return reg?.active?.scriptURL ?? '';
        });
        const token = JSON.parse(env('SIGNIN')).token;
        const cache = await page.evaluate(async (needle) => {
          const urls = [];
          let found = false;
          for (const name of await caches.keys()) {
            const c = await caches.open(name);
            for (const req of await c.keys()) {
              urls.push(req.url);
              const body = await (await c.match(req)).text();
              if (body.includes(needle)) found = true;
            }
          }
          return { urls, found };
        }, token.slice(0, 40));
        out.Cached = cache.urls;
        out.CacheHasToken = cache.found;
        out.Storage = await page.evaluate(() => localStorage.length + sessionStorage.length + (document.cookie ? 1 : 0));
      }
    } finally {
      await context.close();
    }
  }
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
