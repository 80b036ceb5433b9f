// Pure helpers of the homemq web app: token claims, topic names, payloads
// and timing. No DOM and no network, so Node can test them (e2e/node).

/** Home, agent and device ids: 1–64 of [a-z0-9_-] (docs/topics.md). */
export const ID = /^[a-z0-9_-]{1,64}$/;

/** Roles whose holders may send commands (the role table of docs/architecture.md). */
const COMMANDERS = new Set(['admin', 'member', 'service']);

/** MQTT 5 reason codes the broker uses, for readable refusals. */
export const REASONS = {
  0x80: 'unspecified error', 0x83: 'implementation specific error', 0x85: 'client identifier not valid',
  0x86: 'bad user name or password', 0x87: 'not authorized', 0x89: 'server busy', 0x8b: 'server shutting down',
  0x8c: 'bad authentication method', 0x8d: 'keep alive timeout', 0x8e: 'session taken over',
  0x90: 'topic name invalid', 0x93: 'receive maximum exceeded', 0x95: 'packet too large',
  0x97: 'quota exceeded', 0x99: 'payload format invalid', 0x9f: 'connection rate exceeded',
  0xa0: 'maximum connect time (token expired)',
};

/** reasonText names an MQTT 5 reason code: "0x87 not authorized". */
export function reasonText(code) {
  const hex = '0x' + (code >>> 0).toString(16).padStart(2, '0').toUpperCase();
  return REASONS[code] ? `${hex} ${REASONS[code]}` : hex;
}

function b64urlDecode(s) {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error('not base64url');
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * decodeClaims reads a JWT's payload for display. It does not verify the
 * signature: the broker does that at CONNECT; the page only needs to know
 * which homes to show and when the token runs out.
 */
export function decodeClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new Error('this is not a token: a homemq token is three base64url parts joined by dots');
  }
  let c;
  try {
    c = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b64urlDecode(parts[1])));
  } catch {
    throw new Error("the token's payload is not base64url JSON; copy the whole token");
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error("the token's payload is not a JSON object");
  if (typeof c.sub !== 'string' || c.sub === '') throw new Error('the token names no subject (sub)');
  if (typeof c.jti !== 'string' || c.jti === '') throw new Error('the token has no id (jti), so commands cannot be signed');
  if (!Number.isFinite(c.exp)) throw new Error('the token has no expiry (exp)');
  const homes = {};
  if (c.homes && typeof c.homes === 'object' && !Array.isArray(c.homes)) {
    for (const [h, role] of Object.entries(c.homes)) {
      if (ID.test(h) && typeof role === 'string') homes[h] = role;
    }
  }
  return { sub: c.sub, jti: c.jti, iat: Number.isFinite(c.iat) ? c.iat : undefined, exp: c.exp, homes, operator: c.operator === true };
}

/**
 * parseTokenInput accepts what a user pastes: a bare JWT, the JSON that
 * `homemq token mint --json` prints ({token, msg_key, exp}) or a token API
 * answer ({access_token, msg_key, …}). It returns {token, msgKey}.
 */
export function parseTokenInput(text, keyText = '') {
  const s = text.trim();
  let token = s;
  let msgKey = keyText.trim();
  if (s.startsWith('{')) {
    let o;
    try {
      o = JSON.parse(s);
    } catch {
      throw new Error('the pasted JSON does not parse; paste the token alone or the whole output of token mint --json');
    }
    token = String(o.token ?? o.access_token ?? '');
    if (!msgKey && typeof o.msg_key === 'string') msgKey = o.msg_key;
  }
  token = token.replace(/\s+/g, '');
  if (token === '') throw new Error('paste a token first');
  if (msgKey !== '' && !/^[A-Za-z0-9_-]{43}$/.test(msgKey)) {
    throw new Error('the message key must be 43 base64url characters (msg_key of token mint --json)');
  }
  return { token, msgKey };
}

/** canCommand reports whether a role may publish commands. */
export function canCommand(role) {
  return COMMANDERS.has(role);
}

/**
 * filtersFor lists what the page subscribes to in one home for a role:
 * agents' status, devices' state and events, and for those who may send
 * commands the devices' acks. An agent token reads only its own commands,
 * so the page subscribes to nothing for it.
 */
export function filtersFor(home, role) {
  if (!ID.test(home)) return [];
  const base = `homes/${home}/agents/+`;
  const read = [`${base}/status`, `${base}/devices/+/state`, `${base}/devices/+/event`];
  if (role === 'viewer') return read;
  if (canCommand(role)) return [...read, `${base}/devices/+/ack`];
  return [];
}

/** commandTopic is the cmd topic of one device. */
export function commandTopic(home, agent, device) {
  for (const id of [home, agent, device]) {
    if (!ID.test(id)) throw new Error(`${JSON.stringify(id)} is not a valid id`);
  }
  return `homes/${home}/agents/${agent}/devices/${device}/cmd`;
}

/**
 * parseTopic splits a homes/ topic: {home, agent, kind: 'status'} or
 * {home, agent, device, kind: 'state'|'ack'|'event'|'cmd'}; null otherwise.
 */
export function parseTopic(topic) {
  const p = topic.split('/');
  if (p[0] !== 'homes' || p[2] !== 'agents' || !ID.test(p[1] ?? '') || !ID.test(p[3] ?? '')) return null;
  if (p.length === 5 && p[4] === 'status') return { home: p[1], agent: p[3], kind: 'status' };
  if (p.length === 7 && p[4] === 'devices' && ID.test(p[5]) && ['state', 'ack', 'event', 'cmd'].includes(p[6])) {
    return { home: p[1], agent: p[3], device: p[5], kind: p[6] };
  }
  return null;
}

function clip(s, n = 120) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function asObject(text) {
  try {
    const o = JSON.parse(text);
    return o !== null && typeof o === 'object' && !Array.isArray(o) ? o : null;
  } catch {
    return null;
  }
}

/** Device uses (docs/agent.md): what a device is to people. */
const USES = new Set(['switch', 'light', 'door', 'lock', 'input']);

/**
 * deviceUse says what to show a device as: its declared use, or one that
 * follows from its kind for agents that declare none (a pulse is a door).
 */
export function deviceUse(kind, use) {
  if (USES.has(use)) return use;
  if (kind === 'pulse') return 'door';
  if (kind === 'input' || kind === 'sensor') return 'input';
  return 'switch';
}

function time(v) {
  if (typeof v !== 'string') return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

/**
 * parseState reads a device's retained state: plain text ("on") or JSON
 * ({"state":"on","kind":"switch","use":"light","since":"…","until":"…"}).
 * It returns {value, kind, use, since, until, text}; since and until are
 * ms since the epoch when the agent said.
 */
export function parseState(payload) {
  const o = asObject(payload);
  if (!o) {
    const v = clip(payload.trim());
    return { value: v, kind: undefined, use: undefined, since: undefined, until: undefined, text: v };
  }
  let v = o.state ?? o.value ?? o.level;
  if (typeof o.on === 'boolean' && v === undefined) v = o.on ? 'on' : 'off';
  if (typeof v === 'boolean') v = v ? 'on' : 'off';
  const kind = typeof o.kind === 'string' ? o.kind : typeof o.type === 'string' ? o.type : undefined;
  const use = typeof o.use === 'string' && USES.has(o.use) ? o.use : undefined;
  const value = v === undefined ? undefined : clip(String(v));
  return { value, kind, use, since: time(o.since), until: time(o.until), text: value ?? clip(JSON.stringify(o)) };
}

/**
 * controlsFor lists the buttons of a device of that use: absolute actions
 * only (never toggle: the page may not know the state the device is in
 * when the command arrives). confirm marks an action that needs a second
 * tap; when names the state the action leads to.
 */
export function controlsFor(use) {
  switch (use) {
    case 'door':
    case 'lock':
      return [
        { action: 'unlock', label: 'Unlock', confirm: true, when: 'on' },
        { action: 'lock', label: 'Lock', confirm: false, when: 'off' },
      ];
    case 'input':
      return [];
    default:
      return [
        { action: 'on', label: 'Turn on', confirm: false, when: 'on' },
        { action: 'off', label: 'Turn off', confirm: false, when: 'off' },
      ];
  }
}

/** stateLabel is what a person reads for a device's state: "Locked", "On". */
export function stateLabel(use, value) {
  if (value === undefined) return '…';
  if (use === 'door' || use === 'lock') {
    if (value === 'on') return 'Unlocked';
    if (value === 'off') return 'Locked';
  } else if (use === 'input') {
    if (value === 'on') return 'Active';
    if (value === 'off') return 'Idle';
  } else if (value === 'on' || value === 'off') {
    return value === 'on' ? 'On' : 'Off';
  }
  return value;
}

/** resultLabel names what an acknowledged action did: "Unlocked", "Turned on". */
export function resultLabel(action, result) {
  switch (result ?? action) {
    case 'unlocked': case 'unlock': case 'pulse': return 'Unlocked';
    case 'extended': return 'Kept unlocked';
    case 'locked': case 'lock': return 'Locked';
    case 'on': return 'Turned on';
    case 'off': return 'Turned off';
  }
  return `${action}: done`;
}

/** Plain words for the agent's ack error codes (docs/agent.md), with the next step. */
const ACK_ERRORS = {
  expired: 'The command arrived too late and was not carried out. Try again.',
  lifetime_too_long: "The device's clock is wrong, so it refused the command. Ask the home's admin to check the agent's clock.",
  replay_cache_full: 'The device is busy. Try again in a moment.',
  unknown_device: 'The agent does not know this device any more. Reload the page.',
  bad_command: 'The device did not understand the command. Reload the page; if it persists, update the agent.',
  unsupported_action: 'The device cannot do that. Reload the page; if it persists, update the agent.',
  gpio_error: 'The device could not switch: its hardware did not respond. Check its wiring or power.',
  closed: 'The agent is shutting down and did not carry out the command.',
  malformed: 'The device could not read the command. Reload the page.',
};

/** ackProblem says in plain words why an agent refused a command. */
export function ackProblem(code) {
  return ACK_ERRORS[code] ?? 'The device refused the command.';
}

/**
 * plainReason says in plain words, with the next step, what an MQTT 5
 * reason code from the broker means to the person using the page; role is
 * theirs in the home concerned, if any.
 */
export function plainReason(code, role) {
  switch (code) {
    case 0x86: return 'This sign-in was not accepted (it is damaged, revoked or for another hub). Sign in again with a new invite link or token.';
    case 0x87: return role !== undefined && !canCommand(role)
      ? 'You can look but not control this home — ask its admin.'
      : 'The hub did not allow this. Sign in again; if it persists, ask the home’s admin.';
    case 0x89: case 0x97: case 0x9f: return 'The hub is busy. Try again in a moment.';
    case 0x8b: return 'The hub is restarting. The page reconnects by itself.';
    case 0x8d: return 'The connection went quiet and was closed. The page reconnects by itself.';
    case 0x8e: return 'This sign-in was used on another page, which took over. Sign in again here.';
    case 0x95: return 'The command was too large for the hub.';
    case 0xa0: return 'Your sign-in ran out — signing in again…';
  }
  return 'The hub refused. Try again; if it persists, ask the home’s admin.';
}

/**
 * parseAck reads an agent's answer to a command (docs/agent.md):
 * {"nonce":…,"ok":true,"result":"on","state":"on"} or
 * {"nonce":…,"ok":false,"error":"expired","detail":"…"}. It returns
 * {nonce, ok, text}; ok is undefined when the agent did not say.
 */
export function parseAck(payload) {
  const o = asObject(payload);
  if (!o) return { nonce: undefined, ok: undefined, text: clip(payload.trim()) };
  const str = (v) => (typeof v === 'string' && v !== '' ? v : undefined);
  const result = str(o.result) ?? str(o.status);
  let ok = typeof o.ok === 'boolean' ? o.ok : undefined;
  if (ok === undefined && result !== undefined) ok = ['ok', 'done', 'success'].includes(result);
  const parts = ok === false
    ? [str(o.error) ?? result ?? 'refused', str(o.detail) ?? str(o.reason) ?? str(o.message)]
    : [result ?? (ok ? 'ok' : undefined)];
  const state = typeof o.state === 'string' || typeof o.state === 'number' ? String(o.state) : undefined;
  if (state !== undefined && state !== result) parts.push(`state ${state}`);
  const text = parts.filter(Boolean).join(', ') || clip(JSON.stringify(o));
  return { nonce: str(o.nonce), ok, text: clip(text, 200) };
}

/**
 * refreshAt says when to refresh a token (Unix seconds): a quarter of its
 * lifetime before exp, at least 5 s and at most 5 min before it.
 */
export function refreshAt(iat, exp) {
  const life = Math.max(0, exp - (iat ?? exp - 900));
  const lead = Math.min(300, Math.max(5, life / 4));
  return exp - lead;
}

/** formatRemaining shows seconds left as "1 h 05 min", "4:07" or "expired". */
export function formatRemaining(seconds) {
  if (seconds <= 0) return 'expired';
  const s = Math.floor(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const day = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });

/**
 * formatTime is the page's one date format, in local time: "14:03:07"
 * today, "3 Dec 14:03:07" on another day.
 */
export function formatTime(ms, now = Date.now()) {
  const d = new Date(ms);
  const t = clock.format(d);
  return sameDay(d, new Date(now)) ? t : `${day.format(d)} ${t}`;
}

/** formatAge says how long ago something was: "just now", "5 min ago". */
export function formatAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return d === 1 ? '1 day ago' : `${d} days ago`;
}

/** randomSuffix is n random bytes as lowercase hex (client IDs). */
export function randomSuffix(n = 6) {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
}
