// The homemq web app's service worker: it keeps the app shell (the page,
// its modules, styles and icons) so the installed app opens fast and
// offline. It caches nothing else: never /api/ answers (tokens), never the
// MQTT connection (state), never a request with credentials. Each shell file
// is answered from the cache at once and refreshed from the network behind
// it; a new version of this file replaces the whole cache.

const CACHE = 'homemq-shell-v2';
const SHELL = [
  '/', '/app.mjs', '/app.css', '/model.mjs', '/link.mjs', '/envelope.mjs', '/devices.mjs', '/dom.mjs', '/invite.mjs',
  '/vendor/mqtt.esm.js', '/icon.svg', '/icon-192.png', '/icon-512.png', '/manifest.webmanifest',
];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  // Only the shell, fetched plainly: everything else goes to the network untouched.
  if (req.method !== 'GET' || url.origin !== self.location.origin || url.search !== '' || !SHELL.includes(url.pathname)) return;
  ev.respondWith(caches.open(CACHE).then(async (cache) => {
    const cached = await cache.match(url.pathname);
    const fresh = fetch(url.pathname, { cache: 'no-cache', credentials: 'omit' }).then((res) => {
      if (res.ok && res.type === 'basic') cache.put(url.pathname, res.clone());
      return res;
    });
    if (cached) {
      ev.waitUntil(fresh.catch(() => {}));
      return cached;
    }
    return fresh;
  }));
});
