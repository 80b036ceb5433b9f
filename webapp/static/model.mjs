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

/**
 * parseState reads a device's retained state: plain text ("on") or JSON
 * ({"state":"on","kind":"switch",…}). It returns {value, kind, text}.
 */
export function parseState(payload) {
  const o = asObject(payload);
  if (!o) return { value: clip(payload.trim()), kind: undefined, text: clip(payload.trim()) };
  let v = o.state ?? o.value ?? o.level;
  if (typeof o.on === 'boolean' && v === undefined) v = o.on ? 'on' : 'off';
  if (typeof v === 'boolean') v = v ? 'on' : 'off';
  const kind = typeof o.kind === 'string' ? o.kind : typeof o.type === 'string' ? o.type : undefined;
  const value = v === undefined ? undefined : clip(String(v));
  return { value, kind, text: value ?? clip(JSON.stringify(o)) };
}

/** actionsFor lists the buttons of a device of that kind. */
export function actionsFor(kind) {
  switch (kind) {
    case 'pulse':
      return ['pulse'];
    case 'input':
    case 'sensor':
      return [];
    default:
      return ['on', 'off', 'toggle'];
  }
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

/** randomSuffix is n random bytes as lowercase hex (client IDs). */
export function randomSuffix(n = 6) {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
}
