// The homemq web app: sign in, see the homes the sign-in names with their
// agents and devices live and truthful (online or not, how old each state
// is), and send absolute commands sealed with envelope.mjs. The token is
// kept in memory only. Every DOM change goes through textContent and
// attributes, never HTML strings (the CSP enforces Trusted Types).

import { $, describe, details, log } from './dom.mjs';
import {
  ensureHome, homes, noteHome, onMessage, pending, renderAge, renderAgent, renderControls, session, setConnected,
} from './devices.mjs';
import { Link, TokenType, deviceSignIn, exchange } from './link.mjs';
import {
  decodeClaims, filtersFor, formatRemaining, formatTime, parseTokenInput, parseTopic, plainReason, reasonText,
  refreshAt,
} from './model.mjs';

let refreshTimer = 0;
let tickTimer = 0;

// ---- connection and token lifetime ---------------------------------------------

function filtersOf(claims) {
  return Object.entries(claims.homes).flatMap(([h, role]) => filtersFor(h, role));
}

function newLink(creds) {
  const l = new Link(creds, {});
  l.device = creds.device === true; // signed in by invite: refreshed with the device's sign-in
  l.on.message = (topic, text) => onMessage(l, topic, text);
  l.on.status = (state, detail, code) => {
    if (l !== session.link) return;
    setConn(state, detail);
    if (detail) log(state === 'connected' ? 'Connected.' : code !== undefined ? plainReason(code) : 'The connection to the hub dropped; reconnecting…', state === 'connected' ? 'ok' : 'error', detail);
    if (state === 'closed') {
      const why = code === 0xa0 || code === undefined ? 'Your sign-in ran out. Sign in again.' : plainReason(code);
      signOut(why, detail);
    }
  };
  return l;
}

/** CONN_TEXT is what the connection pill says in each state. */
const CONN_TEXT = { connecting: 'connecting…', connected: 'connected', reconnecting: 'reconnecting…', closed: 'signed out' };

/** setConn shows the connection's state; devices turn stale while it is down. */
function setConn(state, detail = '') {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = CONN_TEXT[state] ?? state;
  c.title = detail;
  setConnected(state === 'connected');
}

function reportGrants(grants) {
  for (const g of grants) {
    if (!g.ok) log('Part of this home cannot be shown to you — ask its admin.', 'error', `not allowed to read ${g.filter} (${reasonText(g.code)})`);
  }
}

/** applyClaims shows the homes of the current token, with their roles. */
function applyClaims(claims) {
  for (const [id, h] of homes) {
    const role = claims.homes[id];
    if (!role) {
      h.card.remove();
      homes.delete(id);
    } else if (role !== h.role) {
      h.role = role;
      h.card.querySelector('.role').textContent = role;
      noteHome(h);
      for (const a of h.agents.values()) for (const d of a.devices.values()) renderControls(d);
    }
  }
  for (const [id, role] of Object.entries(claims.homes).sort()) {
    const h = ensureHome(id, role);
    noteHome(h);
  }
  $('no-homes').hidden = Object.keys(claims.homes).length > 0;
  $('sub').textContent = claims.sub;
}

function schedule() {
  clearTimeout(refreshTimer);
  const { iat, exp } = session.link.claims;
  const wait = refreshAt(iat, exp) * 1000 - Date.now();
  refreshTimer = setTimeout(refresh, Math.max(0, wait));
}

function tick() {
  if (!session.link) return;
  const left = session.link.claims.exp - Date.now() / 1000;
  const e = $('expiry');
  e.textContent = left > 0 ? `sign-in renews within ${formatRemaining(left)}` : 'sign-in ran out';
  e.title = `this sign-in's token is valid until ${formatTime(session.link.claims.exp * 1000)}; the page renews it before then`;
  e.dataset.left = String(Math.max(0, Math.floor(left)));
  e.classList.toggle('warn', left < 60);
  for (const h of homes.values()) {
    for (const a of h.agents.values()) {
      renderAgent(a);
      for (const d of a.devices.values()) renderAge(d);
    }
  }
}

/**
 * refresh trades the current token for a fresh one (POST /api/token with
 * the token itself), connects with it, and only then drops the old
 * connection, so the page never goes dark. On failure it retries while the
 * old token lasts.
 */
async function refresh() {
  const cur = session.link;
  if (!cur || cur.refreshing) return;
  cur.refreshing = true;
  clearTimeout(refreshTimer);
  try {
    const fresh = cur.device ? await deviceSignIn('refresh') : await exchange(cur.token, TokenType.jwt);
    if (!fresh) throw new Error('this device is no longer signed in (an admin removed its sign-in)');
    const claims = decodeClaims(fresh.token);
    if (claims.sub !== cur.claims.sub) throw new Error(`the refreshed token is for ${claims.sub}, not ${cur.claims.sub}`);
    const next = newLink(fresh);
    session.incoming = next; // its retained messages count from the first one
    const grants = await next.open(filtersOf(claims)).finally(() => {
      if (session.incoming === next) session.incoming = null;
    });
    if (session.link !== cur) {
      next.close(); // signed out meanwhile
      return;
    }
    session.link = next;
    cur.close();
    applyClaims(claims);
    reportGrants(grants);
    setConn('connected');
    $('refreshes').textContent = String(Number($('refreshes').textContent) + 1);
    log('Sign-in renewed.', 'ok', `token refreshed, valid until ${formatTime(claims.exp * 1000)}`);
    schedule();
    tick();
  } catch (e) {
    if (session.link !== cur) return;
    log('Your sign-in could not be renewed yet; trying again…', 'error', `could not refresh the token: ${e.message}`);
    const left = cur.claims.exp * 1000 - Date.now();
    if (left > 4000) refreshTimer = setTimeout(refresh, Math.min(15_000, left / 2));
  } finally {
    cur.refreshing = false;
  }
}

async function signIn(creds) {
  const claims = decodeClaims(creds.token);
  if (claims.exp * 1000 <= Date.now()) {
    throw Object.assign(new Error(`This sign-in expired at ${formatTime(claims.exp * 1000)}. Ask for a new link or token.`), { plain: true });
  }
  if (session.link) signOut('');
  const l = newLink(creds);
  session.link = l;
  $('signin').hidden = true;
  $('who').hidden = false;
  $('main-view').hidden = false;
  $('refreshes').textContent = '0';
  applyClaims(claims);
  tick();
  tickTimer = setInterval(tick, 1000);
  try {
    reportGrants(await l.open(filtersOf(claims)));
  } catch (e) {
    if (session.link === l) signOut(...explain(e));
    return;
  }
  log(`Signed in as ${claims.sub}.`, 'ok');
  schedule();
}

/** signOut forgets the token and key and shows the sign-in form. */
function signOut(why, detail = '') {
  const l = session.link;
  session.link = null;
  l?.close();
  clearTimeout(refreshTimer);
  clearInterval(tickTimer);
  for (const p of pending.values()) clearTimeout(p.timer);
  pending.clear();
  setConnected(false);
  homes.clear();
  $('homes').replaceChildren();
  $('log').replaceChildren();
  $('who').hidden = true;
  $('main-view').hidden = true;
  $('signin').hidden = false;
  showError(why, detail);
}

function showError(text, detail = '') {
  const e = $('signin-error');
  e.replaceChildren(text || '');
  if (detail) e.append(' ', details(detail));
  e.hidden = !text;
}

/** explain turns a sign-in failure into plain words and its details. */
function explain(e) {
  if (e.plain) return [e.message, ''];
  if (typeof e.code === 'number') return [plainReason(e.code), e.message];
  if (e.signInAPI === 'refresh' && e.status === 403) {
    return ['You are no longer a member of any home here. Ask the home’s admin.', e.message];
  }
  if (e.signInAPI === 'refresh' && e.status === 401) {
    return ['This phone is no longer signed in: the home’s admin removed it, or it went unused for half a year. Ask the admin for a new invite to sign in again.', e.message];
  }
  if (e.signInAPI) {
    return [e.status === 401 ? 'This invite does not work any more (used, expired or withdrawn). Ask the home’s admin for a new one.'
      : 'Could not sign in with this invite. Ask the home’s admin for a new one.', e.message];
  }
  if (e.tokenAPI) return ['The hub did not accept this credential. Check that you copied all of it, or ask for a new one.', e.message];
  if (/not a token|payload|no subject|no id|no expiry|paste|message key|JSON/.test(e.message)) {
    return [`This is not a whole sign-in: ${e.message}.`, ''];
  }
  return ['Could not sign in. Check your connection to the hub and try again.', e.message];
}

async function submit(ev, get) {
  ev.preventDefault(); // never let the browser submit (or put the token in a URL)
  const form = ev.currentTarget;
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  showError('');
  try {
    await signIn(await get());
    form.reset(); // the token lives on only in memory
  } catch (e) {
    showError(...explain(e));
  } finally {
    button.disabled = false;
  }
}

$('paste-form').addEventListener('submit', (ev) => submit(ev, async () => parseTokenInput($('token').value, $('msgkey').value)));
$('exchange-form').addEventListener('submit', (ev) => submit(ev, async () => {
  const subject = $('credential').value.trim();
  if (!subject) throw new Error('paste a credential or ID token first');
  return exchange(subject, $('credtype').value).catch((e) => {
    throw Object.assign(e, { tokenAPI: true });
  });
}));
/** clipDevice names this device for the admin's list of sign-ins: its browser and system. */
function clipDevice(ua) {
  const browser = /(Firefox|Edg|OPR|Chrome|Chromium|Safari)\/[\d.]+/.exec(ua)?.[1] ?? 'a browser';
  const system = /(Android|iPhone|iPad|Windows|Mac OS X|Linux)/.exec(ua)?.[1] ?? 'an unknown system';
  return `${browser === 'Edg' ? 'Edge' : browser} on ${system}`;
}

/**
 * signInFromLink signs in with an invite link's fragment, #invite=SECRET
 * (homemq member invite, serve --demo, or an admin in the app). The fragment
 * never reaches a server in a URL: the page removes it from the address bar
 * and history at once and redeems it by POST. Without one, a device signed
 * in by an invite before gets a fresh token from its sign-in cookie.
 */
function signInFromLink() {
  const inv = /^#invite=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (!inv) {
    deviceSignIn('refresh').then((creds) => creds && signIn(creds)).catch((e) => showError(...explain(e)));
    return;
  }
  history.replaceState(null, '', location.pathname + location.search);
  deviceSignIn('invite', { invite: inv[1], device: clipDevice(navigator.userAgent) })
    .then((creds) => signIn(creds))
    .catch((e) => showError(...explain(e)));
}

$('signout').addEventListener('click', () => {
  if (session.link?.device) {
    // signing out of an invited device ends its sign-in for good
    deviceSignIn('signout').catch(() => {});
    signOut('Signed out. To sign in on this device again, ask the home’s admin for a new invite.');
    return;
  }
  signOut('Signed out.');
});
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !session.link) return;
  tick();
  if (refreshAt(session.link.claims.iat, session.link.claims.exp) * 1000 <= Date.now()) refresh(); // timers slept in the background
});

/**
 * registerWorker installs the service worker that caches the app shell
 * (sw.js). Under Trusted Types the worker's URL must come from a policy:
 * homemq-sw, the CSP's only one, passes "/sw.js" and nothing else.
 */
function registerWorker() {
  if (!('serviceWorker' in navigator)) return;
  // browsers without Trusted Types (which then ignore the CSP's demand) take the string
  const url = window.trustedTypes
    ? trustedTypes.createPolicy('homemq-sw', {
      createScriptURL: (u) => {
        if (u !== '/sw.js') throw new TypeError(`not the service worker: ${u}`);
        return u;
      },
    }).createScriptURL('/sw.js')
    : '/sw.js';
  navigator.serviceWorker.register(url, { scope: '/' })
    .catch((e) => log('This app could not be made installable here.', 'error', `service worker: ${e.message}`));
}
registerWorker();

/**
 * window.homemq is a small console API for people who want to see the
 * broker's checks at work: publish(topic, payload) sends a raw QoS 1
 * message on the page's connection and answers with the broker's verdict.
 * It never exposes the token or the message key.
 */
Object.defineProperty(window, 'homemq', {
  value: Object.freeze({
    get connected() {
      return session.link?.connected ?? false;
    },
    get sub() {
      return session.link?.claims.sub;
    },
    get jti() {
      return session.link?.claims.jti;
    },
    async publish(topic, payload) {
      if (!session.link) throw new Error('sign in first');
      const res = await session.link.publish(String(topic), String(payload));
      if (res.ok) log(`console publish to ${topic}: accepted`, 'ok');
      else log(`console publish to ${topic}: ${plainReason(res.code, session.link.claims.homes[parseTopic(String(topic))?.home])}`, 'error', `refused by the broker — ${describe(res)}`);
      return res;
    },
  }),
});

signInFromLink();
