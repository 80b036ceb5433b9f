// The homemq web app: sign in, see the homes the sign-in names with their
// agents and devices live and truthful (online or not, how old each state
// is), and send absolute commands sealed with envelope.mjs. The token is
// kept in memory only. Every DOM change goes through textContent and
// attributes, never HTML strings (the CSP enforces Trusted Types).

import { seal } from './envelope.mjs';
import { Link, TokenType, exchange } from './link.mjs';
import {
  ackProblem, canCommand, commandTopic, controlsFor, decodeClaims, deviceUse, filtersFor, formatAge,
  formatRemaining, formatTime, parseAck, parseState, parseTokenInput, parseTopic, plainReason, reasonText,
  refreshAt, resultLabel, stateLabel,
} from './model.mjs';

// A command is valid for as long as the page waits for its ack: one that
// got no answer in time can never run later (docs/decisions.md).
const ACK_WAIT = 15_000; // ms to wait for the agent's ack
const COMMAND_TTL = ACK_WAIT / 1000; // seconds a command stays valid
const CONFIRM_WAIT = 5_000; // ms a first tap on Unlock waits for the second
const RESULT_HOLD = 5_000; // ms a command's result shows before it fades
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

/** details is the "details" toggle that holds protocol words for the curious. */
function details(text) {
  return el('details', { class: 'details' }, el('summary', { text: 'details' }), el('code', { text }));
}

let link = null; // the Link in use: token, msg key, claims, MQTT client
let incoming = null; // the Link of a refresh, until it replaces link
let connected = false; // the page's connection to the hub is up
let refreshTimer = 0;
let tickTimer = 0;
const homes = new Map(); // home id -> {role, card, list, agents: Map}
const pending = new Map(); // nonce -> {dev, action, timer, done}

// ---- activity log ---------------------------------------------------------

function log(text, kind = 'info', detail = '') {
  const li = el('li', { class: kind }, el('time', { text: formatTime(Date.now()) }), ' ', text);
  if (detail) li.append(' ', details(detail));
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
  const empty = el('p', { class: 'empty', text: 'No agent has reported yet. Once a home’s agent connects, its devices appear here.' });
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
  if (h.role === 'viewer') note.textContent = 'You can watch this home but not control it — ask its admin to make you a member.';
  else if (h.role === 'agent') note.textContent = 'This is a device’s sign-in: it cannot show the home. Sign in as a person.';
  else if (!canCommand(h.role)) note.textContent = `Your role here (${h.role}) cannot see this home — ask its admin.`;
  else if (!link?.msgKey) note.textContent = 'Watching only: this sign-in came without its message key, so it cannot send commands. Sign in again with the whole sign-in.';
  else note.textContent = '';
  note.hidden = note.textContent === '';
}

function ensureAgent(h, id) {
  let a = h.agents.get(id);
  if (a) return a;
  const status = el('span', { class: 'status', 'data-status': 'unknown', text: 'waiting…' });
  const since = el('p', { class: 'agent-since' });
  const list = el('ul', { class: 'devices' });
  const box = el('section', { class: 'agent', 'data-agent': `${h.id}/${id}` },
    el('h3', {}, el('span', { class: 'name', text: id }), ' ', status), since, list);
  a = { id, home: h, box, status, since, list, devices: new Map(), online: undefined, changedAt: Date.now() };
  h.agents.set(id, a);
  const sorted = [...h.agents.keys()].sort();
  const next = h.agents.get(sorted[sorted.indexOf(id) + 1]);
  h.list.insertBefore(box, next ? next.box : null);
  h.empty.hidden = true;
  return a;
}

/** setAgentStatus records an agent's retained status: online, offline or other. */
function setAgentStatus(a, text) {
  const online = text === 'online' ? true : text === 'offline' ? false : undefined;
  if (online !== a.online) a.changedAt = Date.now();
  a.online = online;
  a.status.dataset.status = online === true ? 'online' : online === false ? 'offline' : 'unknown';
  a.status.textContent = online === true ? 'online' : online === false ? 'offline' : 'status unknown';
  a.box.dataset.online = String(online === true);
  for (const d of a.devices.values()) {
    if (!online) disarm(d);
    renderDevice(d);
  }
  renderAgent(a);
}

/** renderAgent says since when an agent is offline (its age line). */
function renderAgent(a) {
  const t = a.online === false
    ? `Offline — noticed at ${formatTime(a.changedAt)} (${formatAge((Date.now() - a.changedAt) / 1000)}). Its devices show their last known state and cannot be controlled until it is back.`
    : '';
  a.since.textContent = t;
  a.since.hidden = t === '';
}

function ensureDevice(a, id) {
  let d = a.devices.get(id);
  if (d) return d;
  const state = el('span', { class: 'state', text: '…' });
  const age = el('p', { class: 'age' });
  const controls = el('div', { class: 'controls' });
  const why = el('p', { class: 'why' });
  const who = el('p', { class: 'who' });
  const result = el('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const event = el('p', { class: 'event' });
  const row = el('li', { class: 'device', 'data-device': `${a.home.id}/${a.id}/${id}`, 'data-stale': 'true' },
    el('div', { class: 'device-head' }, el('span', { class: 'name', text: id }), state), age, controls, why, who, result, event);
  d = {
    id, agent: a, row, state, age, controls, why, who, result, event, kind: undefined, use: 'switch', value: undefined,
    since: undefined, until: undefined, shown: '', busy: false, armed: null, armTimer: 0, resultTimer: 0,
  };
  a.devices.set(id, d);
  const sorted = [...a.devices.keys()].sort();
  const next = a.devices.get(sorted[sorted.indexOf(id) + 1]);
  a.list.insertBefore(row, next ? next.row : null);
  renderControls(d);
  return d;
}

/** stale reports why a device's state may not be true now, or ''. */
function staleWhy(d) {
  const a = d.agent;
  if (!connected) return 'Not connected to the hub — reconnecting… The states shown may be out of date.';
  if (a.online === false) return `Agent ${a.id} is offline, so this device cannot be controlled now.`;
  if (a.online !== true) return `Waiting for agent ${a.id} to say it is online…`;
  return '';
}

/** renderControls draws the buttons a device's use and the role allow. */
function renderControls(d) {
  const h = d.agent.home;
  d.controls.replaceChildren();
  const lockish = d.use === 'door' || d.use === 'lock';
  d.who.textContent = lockish ? `Admins and members of home ${h.id} may unlock this ${d.use}; unlocking needs a second tap.` : '';
  d.who.hidden = !lockish;
  if (!canCommand(h.role) || !link?.msgKey) return;
  for (const c of controlsFor(d.use)) {
    d.controls.append(el('button', {
      type: 'button', class: 'cmd', 'data-action': c.action, text: c.label,
      'aria-label': `${c.label} ${d.id}`,
      on: { click: () => press(d, c) },
    }));
  }
  renderDevice(d);
}

/** renderDevice shows a device's state, its age, and whether it can be controlled. */
function renderDevice(d) {
  const why = staleWhy(d);
  d.row.dataset.stale = String(why !== '');
  d.row.dataset.state = d.value ?? '';
  d.row.dataset.use = d.use;
  d.state.textContent = stateLabel(d.use, d.value);
  d.why.textContent = why;
  d.why.hidden = why === '';
  for (const b of d.controls.querySelectorAll('button')) {
    const c = controlsFor(d.use).find((x) => x.action === b.dataset.action);
    b.disabled = why !== '' || d.busy;
    b.setAttribute('aria-pressed', String(c?.when === d.value));
    const armed = d.armed === b.dataset.action;
    b.dataset.armed = String(armed);
    b.textContent = armed ? `Tap again to ${c.label.toLowerCase()}` : c.label;
  }
  renderAge(d);
}

/** renderAge says how old the device's state is. */
function renderAge(d) {
  let t = '';
  const now = Date.now();
  if (d.value === undefined) t = 'No state reported yet.';
  else if (d.since === undefined) t = 'The agent did not say when this changed.';
  else {
    const when = `${formatTime(d.since)} (${formatAge((now - d.since) / 1000)})`;
    t = d.row.dataset.stale === 'true' ? `Last known state, from ${when}.` : `Since ${when}.`;
    if (d.value === 'on' && d.until !== undefined && d.until > now && (d.use === 'door' || d.use === 'lock')) {
      t += ` Locks again by itself at ${formatTime(d.until)}.`;
    }
  }
  d.age.textContent = t;
}

function setResult(d, text, kind, detail = '') {
  clearTimeout(d.resultTimer);
  d.result.replaceChildren(text);
  if (detail) d.result.append(' ', details(detail));
  d.result.dataset.kind = kind;
  delete d.result.dataset.fading;
  if (kind === 'ok') {
    // the result gives way to the device's real state, which the row shows
    d.resultTimer = setTimeout(() => {
      d.result.dataset.fading = 'true';
      d.resultTimer = setTimeout(() => {
        d.result.replaceChildren();
        delete d.result.dataset.kind;
        delete d.result.dataset.fading;
      }, 1000);
    }, RESULT_HOLD);
  }
}

function disarm(d) {
  clearTimeout(d.armTimer);
  d.armed = null;
}

/** press handles a tap: an action that needs confirming first arms itself. */
function press(d, c) {
  if (c.confirm && d.armed !== c.action) {
    disarm(d);
    d.armed = c.action;
    d.armTimer = setTimeout(() => {
      d.armed = null;
      renderDevice(d);
    }, CONFIRM_WAIT);
    renderDevice(d);
    return;
  }
  disarm(d);
  renderDevice(d);
  command(d, c.action);
}

// ---- messages ----------------------------------------------------------------

function onMessage(l, topic, text) {
  if (l !== link && l !== incoming) return; // a connection on its way out
  const t = parseTopic(topic);
  const role = t && l.claims.homes[t.home];
  if (!role) return;
  const h = ensureHome(t.home, role);
  if (t.kind === 'status') {
    setAgentStatus(ensureAgent(h, t.agent), text.trim());
    return;
  }
  const d = ensureDevice(ensureAgent(h, t.agent), t.device);
  if (t.kind === 'state') {
    const st = parseState(text);
    const use = deviceUse(st.kind, st.use);
    d.kind = st.kind;
    d.value = st.value;
    d.since = st.since;
    d.until = st.until;
    if (use !== d.use) {
      d.use = use;
      renderControls(d);
    }
    renderDevice(d);
  } else if (t.kind === 'event') {
    d.event.textContent = `${stateLabel(d.use, parseState(text).value)} at ${formatTime(Date.now())}`;
  } else if (t.kind === 'ack') {
    const ack = parseAck(text);
    const p = ack.nonce && pending.get(ack.nonce);
    if (!p) return; // someone else's command
    clearTimeout(p.timer);
    pending.delete(ack.nonce);
    p.done = true;
    const o = JSON.parse(text);
    if (ack.ok !== false) {
      const label = resultLabel(p.action, typeof o.result === 'string' ? o.result : undefined);
      setResult(p.dev, `${label} at ${formatTime(Date.now())}`, 'ok');
      log(`${p.dev.id}: ${label.toLowerCase()}`, 'ok', `agent answered ${ack.text}`);
    } else {
      const problem = ackProblem(o.error);
      setResult(p.dev, problem, 'error', `agent answered ${ack.text}`);
      log(`${p.dev.id}: ${problem}`, 'error', `agent answered ${ack.text}`);
    }
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
    setResult(d, 'The command could not be signed on this device. Sign in again.', 'error', e.message);
    return;
  }
  const nonce = JSON.parse(env).nonce;
  const p = { dev: d, action, done: false, timer: 0 };
  p.timer = setTimeout(() => {
    pending.delete(nonce);
    setResult(d, `No answer from ${a.id} within ${ACK_WAIT / 1000} s: the command has expired and will not run later. Check that the agent is online, then try again.`, 'error');
  }, ACK_WAIT);
  pending.set(nonce, p); // before publishing: the ack can beat the PUBACK
  d.busy = true;
  renderDevice(d);
  setResult(d, 'Sending…', 'pending');
  const res = await l.publish(topic, env);
  d.busy = false;
  renderDevice(d);
  if (!res.ok) {
    clearTimeout(p.timer);
    pending.delete(nonce);
    const plain = res.code !== undefined ? plainReason(res.code, a.home.role) : 'The command did not reach the hub. Check your connection and try again.';
    setResult(d, plain, 'error', `${action} refused by the broker — ${describe(res)}`);
    log(`${d.id}: ${plain}`, 'error', `${action} refused by the broker — ${describe(res)}`);
    return;
  }
  if (!p.done) setResult(d, `Waiting for ${a.id} to answer…`, 'pending');
}

// ---- connection and token lifetime ---------------------------------------------

function filtersOf(claims) {
  return Object.entries(claims.homes).flatMap(([h, role]) => filtersFor(h, role));
}

function newLink(creds) {
  const l = new Link(creds, {});
  l.on.message = (topic, text) => onMessage(l, topic, text);
  l.on.status = (state, detail, code) => {
    if (l !== link) return;
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
  const up = state === 'connected';
  if (up === connected) return;
  connected = up;
  for (const h of homes.values()) for (const a of h.agents.values()) for (const d of a.devices.values()) renderDevice(d);
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
  const { iat, exp } = link.claims;
  const wait = refreshAt(iat, exp) * 1000 - Date.now();
  refreshTimer = setTimeout(refresh, Math.max(0, wait));
}

function tick() {
  if (!link) return;
  const left = link.claims.exp - Date.now() / 1000;
  const e = $('expiry');
  e.textContent = left > 0 ? `sign-in renews within ${formatRemaining(left)}` : 'sign-in ran out';
  e.title = `this sign-in's token is valid until ${formatTime(link.claims.exp * 1000)}; the page renews it before then`;
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
    setConn('connected');
    $('refreshes').textContent = String(Number($('refreshes').textContent) + 1);
    log('Sign-in renewed.', 'ok', `token refreshed, valid until ${formatTime(claims.exp * 1000)}`);
    schedule();
    tick();
  } catch (e) {
    if (link !== cur) return;
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
    if (link === l) signOut(...explain(e));
    return;
  }
  log(`Signed in as ${claims.sub}.`, 'ok');
  schedule();
}

/** signOut forgets the token and key and shows the sign-in form. */
function signOut(why, detail = '') {
  const l = link;
  link = null;
  l?.close();
  clearTimeout(refreshTimer);
  clearInterval(tickTimer);
  for (const p of pending.values()) clearTimeout(p.timer);
  pending.clear();
  connected = false;
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
      if (res.ok) log(`console publish to ${topic}: accepted`, 'ok');
      else log(`console publish to ${topic}: ${plainReason(res.code, link.claims.homes[parseTopic(String(topic))?.home])}`, 'error', `refused by the broker — ${describe(res)}`);
      return res;
    },
  }),
});
