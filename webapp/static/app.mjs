// The homemq web app: sign in with a token (kept in memory only), see the
// homes it names with their agents and devices live, and send commands
// sealed with envelope.mjs. Every DOM change goes through textContent and
// attributes, never HTML strings (the CSP enforces Trusted Types).

import { seal } from './envelope.mjs';
import { Link, TokenType, exchange } from './link.mjs';
import {
  actionsFor, canCommand, commandTopic, decodeClaims, filtersFor, formatRemaining,
  parseAck, parseState, parseTokenInput, parseTopic, reasonText, refreshAt,
} from './model.mjs';

const COMMAND_TTL = 30; // seconds a command stays valid
const ACK_WAIT = 15_000; // ms to wait for the agent's ack
const LOG_MAX = 50;

const $ = (id) => document.getElementById(id);

/** el makes an element: props text, class, data-*, aria-*, on: {event: fn}. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

let link = null; // the Link in use: token, msg key, claims, MQTT client
let incoming = null; // the Link of a refresh, until it replaces link
let refreshTimer = 0;
let tickTimer = 0;
const homes = new Map(); // home id -> {role, card, list, agents: Map}
const pending = new Map(); // nonce -> {dev, action, timer, done}

// ---- activity log ---------------------------------------------------------

function log(text, kind = 'info') {
  const li = el('li', { class: kind }, el('time', { text: new Date().toLocaleTimeString() }), ' ', text);
  const list = $('log');
  list.prepend(li);
  while (list.children.length > LOG_MAX) list.lastElementChild.remove();
}

function describe(res) {
  return res.code !== undefined ? `${reasonText(res.code)}: ${res.reason}` : res.reason;
}

// ---- homes, agents, devices -------------------------------------------------

function ensureHome(id, role) {
  let h = homes.get(id);
  if (h) return h;
  const list = el('div', { class: 'agents' });
  const empty = el('p', { class: 'empty', text: 'No agent has reported yet.' });
  const card = el('article', { class: 'home', 'data-home': id },
    el('h2', {}, el('span', { class: 'name', text: id }), ' ', el('span', { class: 'role', text: role })),
    empty, list);
  h = { id, role, card, list, empty, agents: new Map() };
  homes.set(id, h);
  const sorted = [...homes.keys()].sort();
  const next = homes.get(sorted[sorted.indexOf(id) + 1]);
  $('homes').insertBefore(card, next ? next.card : null);
  noteHome(h);
  return h;
}

/** noteHome explains, under the home's title, what this role can do. */
function noteHome(h) {
  let note = h.card.querySelector('.note');
  if (!note) {
    note = el('p', { class: 'note' });
    h.card.querySelector('h2').after(note);
  }
  if (h.role === 'viewer') note.textContent = 'You can watch this home; commands need a member or admin.';
  else if (h.role === 'agent') note.textContent = 'An agent token reads only its own commands: sign in as a user to see this home.';
  else if (!canCommand(h.role)) note.textContent = `Role ${h.role} cannot read this home.`;
  else if (!link?.msgKey) note.textContent = 'Read-only: sign in with the message key (msg_key) to send commands.';
  else note.textContent = '';
  note.hidden = note.textContent === '';
}

function ensureAgent(h, id) {
  let a = h.agents.get(id);
  if (a) return a;
  const status = el('span', { class: 'status', 'data-status': 'unknown', text: 'status unknown' });
  const list = el('ul', { class: 'devices' });
  const box = el('section', { class: 'agent', 'data-agent': `${h.id}/${id}` },
    el('h3', {}, el('span', { class: 'name', text: id }), ' ', status), list);
  a = { id, home: h, box, status, list, devices: new Map() };
  h.agents.set(id, a);
  const sorted = [...h.agents.keys()].sort();
  const next = h.agents.get(sorted[sorted.indexOf(id) + 1]);
  h.list.insertBefore(box, next ? next.box : null);
  h.empty.hidden = true;
  return a;
}

function ensureDevice(a, id) {
  let d = a.devices.get(id);
  if (d) return d;
  const state = el('span', { class: 'state', text: '…' });
  const controls = el('div', { class: 'controls' });
  const result = el('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const event = el('p', { class: 'event' });
  const row = el('li', { class: 'device', 'data-device': `${a.home.id}/${a.id}/${id}` },
    el('div', { class: 'device-head' }, el('span', { class: 'name', text: id }), state), controls, result, event);
  d = { id, agent: a, row, state, controls, result, event, kind: undefined, busy: false };
  a.devices.set(id, d);
  const sorted = [...a.devices.keys()].sort();
  const next = a.devices.get(sorted[sorted.indexOf(id) + 1]);
  a.list.insertBefore(row, next ? next.row : null);
  renderControls(d);
  return d;
}

/** renderControls draws the buttons a device's kind and the role allow. */
function renderControls(d) {
  const h = d.agent.home;
  d.controls.replaceChildren();
  if (!canCommand(h.role) || !link?.msgKey) return;
  for (const action of actionsFor(d.kind)) {
    d.controls.append(el('button', {
      type: 'button', class: 'cmd', 'data-action': action, text: action,
      'aria-label': `${action} ${d.id}`,
      on: { click: () => command(d, action) },
    }));
  }
}

function setResult(d, text, kind) {
  d.result.textContent = text;
  d.result.dataset.kind = kind;
}

// ---- messages ----------------------------------------------------------------

function onMessage(l, topic, text) {
  if (l !== link && l !== incoming) return; // a connection on its way out
  const t = parseTopic(topic);
  const role = t && l.claims.homes[t.home];
  if (!role) return;
  const h = ensureHome(t.home, role);
  if (t.kind === 'status') {
    const a = ensureAgent(h, t.agent);
    const s = text.trim() || 'unknown';
    a.status.textContent = s;
    a.status.dataset.status = s === 'online' || s === 'offline' ? s : 'unknown';
    return;
  }
  const d = ensureDevice(ensureAgent(h, t.agent), t.device);
  if (t.kind === 'state') {
    const st = parseState(text);
    d.state.textContent = st.text || '…';
    d.row.dataset.state = st.value ?? '';
    if (st.kind !== d.kind) {
      d.kind = st.kind;
      renderControls(d);
    }
  } else if (t.kind === 'event') {
    d.event.textContent = `event ${new Date().toLocaleTimeString()}: ${parseState(text).text}`;
  } else if (t.kind === 'ack') {
    const ack = parseAck(text);
    const p = ack.nonce && pending.get(ack.nonce);
    if (!p) return; // someone else's command
    clearTimeout(p.timer);
    pending.delete(ack.nonce);
    p.done = true;
    const ok = ack.ok !== false;
    setResult(p.dev, `${p.action}: ${ok ? 'done' : 'refused by the agent'} (${ack.text})`, ok ? 'ok' : 'error');
    log(`${p.dev.id} ${p.action}: agent answered ${ack.text}`, ok ? 'ok' : 'error');
  }
}

// ---- commands ----------------------------------------------------------------

async function command(d, action) {
  const l = link;
  const a = d.agent;
  if (!l || d.busy) return;
  const topic = commandTopic(a.home.id, a.id, d.id);
  let env;
  try {
    env = await seal({ key: l.msgKey, topic, kid: l.claims.jti, msg: JSON.stringify({ action }), ttlSeconds: COMMAND_TTL });
  } catch (e) {
    setResult(d, `${action}: could not sign the command: ${e.message}`, 'error');
    return;
  }
  const nonce = JSON.parse(env).nonce;
  const p = { dev: d, action, done: false, timer: 0 };
  p.timer = setTimeout(() => {
    pending.delete(nonce);
    setResult(d, `${action}: no answer from agent ${a.id} within ${ACK_WAIT / 1000} s`, 'error');
  }, ACK_WAIT);
  pending.set(nonce, p); // before publishing: the ack can beat the PUBACK
  d.busy = true;
  setResult(d, `${action}: sending…`, 'pending');
  const res = await l.publish(topic, env);
  d.busy = false;
  if (!res.ok) {
    clearTimeout(p.timer);
    pending.delete(nonce);
    setResult(d, `${action}: refused by the broker — ${describe(res)}`, 'error');
    log(`${d.id} ${action} refused by the broker — ${describe(res)}`, 'error');
    return;
  }
  if (!p.done) setResult(d, `${action}: accepted by the broker, waiting for agent ${a.id}…`, 'pending');
}

// ---- connection and token lifetime ---------------------------------------------

function filtersOf(claims) {
  return Object.entries(claims.homes).flatMap(([h, role]) => filtersFor(h, role));
}

function newLink(creds) {
  const l = new Link(creds, {});
  l.on.message = (topic, text) => onMessage(l, topic, text);
  l.on.status = (state, detail) => {
    if (l !== link) return;
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = state;
    c.title = detail;
    if (detail) log(detail, state === 'connected' ? 'ok' : 'error');
    if (state === 'closed') signOut(detail);
  };
  return l;
}

function reportGrants(grants) {
  for (const g of grants) {
    if (!g.ok) log(`not allowed to read ${g.filter} (${reasonText(g.code)})`, 'error');
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
  const { iat, exp } = link.claims;
  const wait = refreshAt(iat, exp) * 1000 - Date.now();
  refreshTimer = setTimeout(refresh, Math.max(0, wait));
}

function tick() {
  if (!link) return;
  const left = link.claims.exp - Date.now() / 1000;
  const e = $('expiry');
  e.textContent = left > 0 ? `token expires in ${formatRemaining(left)}` : 'token expired';
  e.dataset.left = String(Math.max(0, Math.floor(left)));
  e.classList.toggle('warn', left < 60);
}

/**
 * refresh trades the current token for a fresh one (POST /api/token with
 * the token itself), connects with it, and only then drops the old
 * connection, so the page never goes dark. On failure it retries while the
 * old token lasts.
 */
async function refresh() {
  const cur = link;
  if (!cur || cur.refreshing) return;
  cur.refreshing = true;
  clearTimeout(refreshTimer);
  try {
    const fresh = await exchange(cur.token, TokenType.jwt);
    const claims = decodeClaims(fresh.token);
    if (claims.sub !== cur.claims.sub) throw new Error(`the refreshed token is for ${claims.sub}, not ${cur.claims.sub}`);
    const next = newLink(fresh);
    incoming = next; // its retained messages count from the first one
    const grants = await next.open(filtersOf(claims)).finally(() => {
      if (incoming === next) incoming = null;
    });
    if (link !== cur) {
      next.close(); // signed out meanwhile
      return;
    }
    link = next;
    cur.close();
    applyClaims(claims);
    reportGrants(grants);
    $('conn').dataset.state = 'connected';
    $('conn').textContent = 'connected';
    $('refreshes').textContent = String(Number($('refreshes').textContent) + 1);
    log(`token refreshed, valid until ${new Date(claims.exp * 1000).toLocaleTimeString()}`, 'ok');
    schedule();
    tick();
  } catch (e) {
    if (link !== cur) return;
    log(`could not refresh the token: ${e.message}`, 'error');
    const left = cur.claims.exp * 1000 - Date.now();
    if (left > 4000) refreshTimer = setTimeout(refresh, Math.min(15_000, left / 2));
  } finally {
    cur.refreshing = false;
  }
}

async function signIn(creds) {
  const claims = decodeClaims(creds.token);
  if (claims.exp * 1000 <= Date.now()) {
    throw new Error(`this token expired at ${new Date(claims.exp * 1000).toLocaleString()}; mint or exchange a new one`);
  }
  if (link) signOut('');
  const l = newLink(creds);
  link = l;
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
    if (link === l) signOut(e.message);
    return;
  }
  log(`signed in as ${claims.sub}`, 'ok');
  schedule();
}

/** signOut forgets the token and key and shows the sign-in form. */
function signOut(why) {
  const l = link;
  link = null;
  l?.close();
  clearTimeout(refreshTimer);
  clearInterval(tickTimer);
  for (const p of pending.values()) clearTimeout(p.timer);
  pending.clear();
  homes.clear();
  $('homes').replaceChildren();
  $('log').replaceChildren();
  $('who').hidden = true;
  $('main-view').hidden = true;
  $('signin').hidden = false;
  showError(why);
}

function showError(text) {
  const e = $('signin-error');
  e.textContent = text || '';
  e.hidden = !text;
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
    showError(e.message);
  } finally {
    button.disabled = false;
  }
}

$('paste-form').addEventListener('submit', (ev) => submit(ev, async () => parseTokenInput($('token').value, $('msgkey').value)));
$('exchange-form').addEventListener('submit', (ev) => submit(ev, async () => {
  const subject = $('credential').value.trim();
  if (!subject) throw new Error('paste a credential or ID token first');
  return exchange(subject, $('credtype').value);
}));
$('signout').addEventListener('click', () => signOut('Signed out.'));
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !link) return;
  tick();
  if (refreshAt(link.claims.iat, link.claims.exp) * 1000 <= Date.now()) refresh(); // timers slept in the background
});

/**
 * window.homemq is a small console API for people who want to see the
 * broker's checks at work: publish(topic, payload) sends a raw QoS 1
 * message on the page's connection and answers with the broker's verdict.
 * It never exposes the token or the message key.
 */
Object.defineProperty(window, 'homemq', {
  value: Object.freeze({
    get connected() {
      return link?.connected ?? false;
    },
    get sub() {
      return link?.claims.sub;
    },
    get jti() {
      return link?.claims.jti;
    },
    async publish(topic, payload) {
      if (!link) throw new Error('sign in first');
      const res = await link.publish(String(topic), String(payload));
      log(res.ok ? `console publish to ${topic}: accepted` : `console publish to ${topic} refused by the broker — ${describe(res)}`, res.ok ? 'ok' : 'error');
      return res;
    },
  }),
});
