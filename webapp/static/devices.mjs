// The homes, agents and devices of the homemq web app: what they show
// (state, its age, whether the agent is online) and the commands sent from
// their buttons. app.mjs owns the sign-in and the connection, and tells this
// module about them through session.

import { seal } from './envelope.mjs';
import { $, details, describe, el, log } from './dom.mjs';
import { inviteBox } from './invite.mjs';
import {
  ackProblem, canCommand, commandTopic, controlsFor, deviceUse, formatAge, formatTime, parseAck, parseState,
  parseTopic, plainReason, resultLabel, stateLabel,
} from './model.mjs';

// A command is valid for as long as the page waits for its ack: one that
// got no answer in time can never run later (docs/decisions.md).
const ACK_WAIT = 15_000; // ms to wait for the agent's ack
const COMMAND_TTL = ACK_WAIT / 1000; // seconds a command stays valid
const CONFIRM_WAIT = 5_000; // ms a first tap on Unlock waits for the second
const RESULT_HOLD = 5_000; // ms a command's result shows before it fades

/**
 * session is what app.mjs tells this module: link, the Link in use;
 * incoming, the Link of a refresh until it replaces link; connected, whether
 * the page's connection to the hub is up.
 */
export const session = { link: null, incoming: null, connected: false };

/** homes maps a home id to {id, role, card, list, empty, agents}. */
export const homes = new Map();

/** pending maps a command's nonce to {dev, action, timer, done} until its ack. */
export const pending = new Map();

/** setConnected records whether the page is connected; devices turn stale while it is not. */
export function setConnected(up) {
  if (up === session.connected) return;
  session.connected = up;
  for (const h of homes.values()) for (const a of h.agents.values()) for (const d of a.devices.values()) renderDevice(d);
}

export function ensureHome(id, role) {
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
export function noteHome(h) {
  let note = h.card.querySelector('.note');
  if (!note) {
    note = el('p', { class: 'note' });
    h.card.querySelector('h2').after(note);
  }
  if (h.role === 'viewer') note.textContent = 'You can watch this home but not control it — ask its admin to make you a member.';
  else if (h.role === 'agent') note.textContent = 'This is a device’s sign-in: it cannot show the home. Sign in as a person.';
  else if (!canCommand(h.role)) note.textContent = `Your role here (${h.role}) cannot see this home — ask its admin.`;
  else if (!session.link?.msgKey) note.textContent = 'Watching only: this sign-in came without its message key, so it cannot send commands. Sign in again with the whole sign-in.';
  else note.textContent = '';
  note.hidden = note.textContent === '';
  // admins may invite people from here
  const canInvite = h.role === 'admin' && session.link !== null;
  if (canInvite && !h.invite) {
    h.invite = inviteBox(h.id, () => session.link?.token);
    h.list.after(h.invite);
  } else if (!canInvite && h.invite) {
    h.invite.remove();
    h.invite = null;
  }
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
export function renderAgent(a) {
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
  if (!session.connected) return 'Not connected to the hub — reconnecting… The states shown may be out of date.';
  if (a.online === false) return `Cannot be controlled while ${a.id} is offline.`;
  if (a.online !== true) return `Waiting for ${a.id} to say it is online…`;
  return '';
}

/** renderControls draws the buttons a device's use and the role allow. */
export function renderControls(d) {
  const h = d.agent.home;
  d.controls.replaceChildren();
  const lockish = d.use === 'door' || d.use === 'lock';
  d.who.textContent = lockish ? `Admins and members of home ${h.id} may unlock this ${d.use}; unlocking needs a second tap.` : '';
  d.who.hidden = !lockish;
  if (!canCommand(h.role) || !session.link?.msgKey) return;
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
export function renderDevice(d) {
  const why = staleWhy(d);
  d.row.dataset.stale = String(why !== '');
  d.row.dataset.state = d.value ?? '';
  d.row.dataset.use = d.use;
  d.state.textContent = stateLabel(d.use, d.value);
  d.why.textContent = why;
  d.why.hidden = why === '' || d.controls.childElementCount === 0;
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
export function renderAge(d) {
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

export function disarm(d) {
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

export function onMessage(l, topic, text) {
  if (l !== session.link && l !== session.incoming) return; // a connection on its way out
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
  const l = session.link;
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
