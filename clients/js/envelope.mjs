// envelope.mjs — the homemq signed command envelope, version 1, for browsers
// and Node >= 20. WebCrypto only (globalThis.crypto.subtle), no dependency.
// The format is specified in docs/envelope.md; envelope/testdata/vectors.json
// holds the vectors this module and the Go package both pass.
//
//   import { seal } from './envelope.mjs';
//   const payload = await seal({ key: msgKey, topic, kid: jti, msg: '{"action":"on"}' });
//   mqttClient.publish(topic, payload, { qos: 1 });
//
// key is the token's msg_key (base64url string, bytes or an HMAC CryptoKey)
// and kid the token's jti.

/** The envelope format version this module writes and accepts. */
export const VERSION = 1;

/** Stable refusal reasons, identical to the Go package's. */
export const Reason = Object.freeze({
  MALFORMED: 'malformed',
  VERSION: 'unknown_version',
  KID: 'wrong_kid',
  FUTURE: 'issued_in_future',
  EXPIRED: 'expired',
  LIFETIME: 'lifetime_too_long',
  SIGNATURE: 'bad_signature',
  REPLAY: 'replay',
  CACHE_FULL: 'replay_cache_full',
});

/** A refused envelope: `reason` is one of Reason, `message` says why. */
export class EnvelopeError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = 'EnvelopeError';
    this.reason = reason;
  }
}

const NONCE_SIZE = 16;
const SIG_SIZE = 32;
const MAX_KID_LEN = 128;
const MIN_KEY_LEN = 16;
const CAP_MAX_LIFETIME = 3600;
const KEY_LABEL = 'homemq-msg-key-v1\n';
const SIG_LABEL = 'homemq-envelope-v1\n';
const MEMBERS = ['v', 'kid', 'iat', 'exp', 'nonce', 'msg', 'sig'];

const utf8 = new TextEncoder();

/** The receiver's defaults: 5 s skew, 60 s lifetime, 16 KiB payloads. */
export function defaultPolicy() {
  return { skewSeconds: 5, maxLifetimeSeconds: 60, maxSize: 16384 };
}

// effective fills in defaults and caps, as Go's Policy.Effective does: a zero
// or missing field takes its default, a negative skew means none.
function effective(p = {}) {
  const d = defaultPolicy();
  let skew = p.skewSeconds ?? 0;
  skew = skew === 0 ? d.skewSeconds : Math.max(0, skew);
  let life = p.maxLifetimeSeconds ?? 0;
  life = life > 0 ? Math.min(life, CAP_MAX_LIFETIME) : d.maxLifetimeSeconds;
  const size = (p.maxSize ?? 0) > 0 ? p.maxSize : d.maxSize;
  return { skewSeconds: skew, maxLifetimeSeconds: life, maxSize: size };
}

// ---- base64url ----------------------------------------------------------

/** Encodes bytes as base64url without padding. */
export function base64urlEncode(bytes) {
  const b = toBytes(bytes);
  let bin = '';
  for (let i = 0; i < b.length; i++) bin += String.fromCharCode(b[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes base64url without padding; throws on anything else. */
export function base64urlDecode(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) {
    throw new TypeError('not base64url without padding');
  }
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// strictB64 reports whether s is exactly `size` bytes in canonical base64url
// without padding (the unused trailing bits zero).
function strictB64(s, size) {
  if (typeof s !== 'string' || s.length !== Math.ceil((size * 4) / 3)) return false;
  try {
    const b = base64urlDecode(s);
    return b.length === size && base64urlEncode(b) === s;
  } catch {
    return false;
  }
}

function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  throw new TypeError('expected bytes (Uint8Array or ArrayBuffer)');
}

// ---- keys and signing ---------------------------------------------------

const subtle = () => {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new Error('envelope: WebCrypto is not available (a browser needs a secure context: https or localhost)');
  return s;
};

async function hmacKey(raw) {
  return subtle().importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
}

/**
 * Returns the message key of the token with this jti:
 * HMAC-SHA256(master, "homemq-msg-key-v1\n" + jti). The broker does this; a
 * client gets the result as msg_key. Exported for tests.
 */
export async function deriveKey(master, jti) {
  const k = await hmacKey(toBytes(master));
  return new Uint8Array(await subtle().sign('HMAC', k, utf8.encode(KEY_LABEL + jti)));
}

/**
 * Imports a message key for sealing and verifying: a base64url string (the
 * token API's msg_key), raw bytes, or an HMAC CryptoKey (returned as is).
 * Import once and reuse the CryptoKey when sealing many commands.
 */
export async function importKey(key) {
  if (globalThis.CryptoKey && key instanceof globalThis.CryptoKey) return key;
  let raw;
  try {
    raw = typeof key === 'string' ? base64urlDecode(key) : toBytes(key);
  } catch {
    throw new TypeError('envelope: the message key must be the msg_key string (base64url) or its bytes');
  }
  if (raw.length < MIN_KEY_LEN) {
    throw new TypeError(`envelope: message key is ${raw.length} bytes, want at least ${MIN_KEY_LEN}`);
  }
  return hmacKey(raw);
}

/** The string whose UTF-8 bytes sig is the HMAC-SHA256 of. */
export function signingInput(topic, kid, iat, exp, nonce, msg) {
  return `${SIG_LABEL}${topic}\n${kid}\n${iat}\n${exp}\n${nonce}\n${msg}`;
}

function nowSeconds(now) {
  const ms = now === undefined ? Date.now() : now instanceof Date ? now.getTime() : now;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) throw new TypeError('envelope: now must be a Date or milliseconds since the epoch');
  return Math.floor(ms / 1000);
}

function nowMs(now) {
  return now === undefined ? Date.now() : now instanceof Date ? now.getTime() : now;
}

/**
 * Seals msg for topic and returns the envelope's JSON text, byte for byte
 * what the Go package makes. now: Date or ms since the epoch (default: now);
 * ttlSeconds: whole seconds until exp (default 30, at least 1); nonce:
 * 16 bytes in base64url (default: fresh random, which is what you want).
 */
export async function seal({ key, topic, kid, msg, now, ttlSeconds = 30, nonce }) {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new TypeError(`envelope: cannot seal: ttlSeconds must be a whole number of seconds, at least 1 (got ${ttlSeconds})`);
  }
  const cryptoKey = await importKey(key);
  if (nonce === undefined) {
    nonce = base64urlEncode(globalThis.crypto.getRandomValues(new Uint8Array(NONCE_SIZE)));
  }
  const iat = nowSeconds(now);
  const env = { v: VERSION, kid, iat, exp: iat + ttlSeconds, nonce, msg, sig: 'A'.repeat(43) };
  const bad = checkTopic(topic) || check(env);
  if (bad) throw new TypeError('envelope: cannot seal: ' + bad.message.replace(/^malformed envelope: /, ''));
  const sig = await subtle().sign('HMAC', cryptoKey, utf8.encode(signingInput(topic, kid, env.iat, env.exp, nonce, msg)));
  env.sig = base64urlEncode(sig);
  return JSON.stringify(env);
}

// ---- parsing --------------------------------------------------------------

function malformed(detail) {
  return new EnvelopeError(Reason.MALFORMED, 'malformed envelope: ' + detail);
}

function versionError(v) {
  return new EnvelopeError(Reason.VERSION, `envelope version ${v} is not supported; this client speaks version ${VERSION}`);
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Checks that payload (a string, or the bytes of an MQTT message) is a
 * well-formed envelope and returns it as {v, kid, iat, exp, nonce, msg, sig}.
 * Needs no key and no clock. Throws EnvelopeError (malformed or
 * unknown_version) with exactly the rules of the Go package.
 */
export function parse(payload, policy) {
  const p = effective(policy);
  let text;
  if (typeof payload === 'string') {
    if (!isWellFormed(payload)) throw malformed('payload is not valid UTF-8');
    const size = utf8.encode(payload).length;
    if (size > p.maxSize) throw malformed(`payload is ${size} bytes, more than the limit of ${p.maxSize}`);
    text = payload;
  } else {
    const b = toBytes(payload);
    if (b.length > p.maxSize) throw malformed(`payload is ${b.length} bytes, more than the limit of ${p.maxSize}`);
    try {
      text = decoder.decode(b);
    } catch {
      throw malformed('payload is not valid UTF-8');
    }
  }
  if (text.length === 0) throw malformed('payload is empty; a command must be a signed envelope (see docs/envelope.md)');
  let env;
  try {
    env = decode(text);
  } catch (err) {
    const v = probeVersion(text);
    if (v !== undefined && v !== VERSION) throw versionError(v);
    throw err;
  }
  const bad = check(env);
  if (bad) throw bad;
  return env;
}

function isWellFormed(s) {
  if (typeof s.isWellFormed === 'function') return s.isWellFormed();
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

// probeVersion returns the number in member "v" of a JSON object the strict
// decoder refused: a newer format may look different.
function probeVersion(text) {
  try {
    const o = JSON.parse(text);
    if (o !== null && typeof o === 'object' && !Array.isArray(o) && Object.hasOwn(o, 'v') && typeof o.v === 'number') {
      return o.v;
    }
  } catch {
    // not JSON at all
  }
  return undefined;
}

// decode is the strict reader of the one JSON object an envelope is: the
// seven members, each once, named exactly, integers as plain digits.
function decode(s) {
  let i = 0;
  const env = {};
  const ws = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  };
  const eat = (c) => {
    if (s[i] === c) {
      i++;
      return true;
    }
    return false;
  };
  const unexpected = (want) =>
    i >= s.length ? malformed('payload ends early, want ' + want) : malformed(`unexpected ${JSON.stringify(s[i])} at position ${i}, want ${want}`);

  const integer = (name) => {
    const start = i;
    while (i < s.length && s[i] >= '0' && s[i] <= '9') i++;
    const digits = s.slice(start, i);
    const bad = () => malformed(`member "${name}" must be an integer from 0 to 2^53-1`);
    if (digits === '' || digits.length > 16 || (digits.length > 1 && digits[0] === '0')) throw bad();
    if (s[i] === '.' || s[i] === 'e' || s[i] === 'E') throw bad();
    const v = Number(digits);
    if (v > Number.MAX_SAFE_INTEGER) throw bad();
    return v;
  };

  const hex4 = () => {
    const h = s.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) return -1;
    i += 4;
    return parseInt(h, 16);
  };

  const str = (name) => {
    const bad = (what) => malformed(`member "${name}": ${what}`);
    if (!eat('"')) throw malformed(`member "${name}" must be a string`);
    let out = '';
    let start = i;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        out += s.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) throw bad('raw control character; escape it');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(start, i);
      if (i + 1 >= s.length) break;
      const esc = s[i + 1];
      i += 2;
      switch (esc) {
        case '"': case '\\': case '/': out += esc; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hi = hex4();
          if (hi < 0) throw bad('\\u must be followed by four hex digits');
          if (hi >= 0xd800 && hi <= 0xdfff) {
            if (hi >= 0xdc00 || s[i] !== '\\' || s[i + 1] !== 'u') throw bad('lone UTF-16 surrogate escape');
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) throw bad('lone UTF-16 surrogate escape');
            out += String.fromCharCode(hi, lo);
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          throw bad(`invalid escape \\${esc}`);
      }
      start = i;
    }
    throw bad('string is not terminated');
  };

  ws();
  if (!eat('{')) throw malformed('payload is not a JSON object; a command must be a signed envelope (see docs/envelope.md)');
  ws();
  if (!eat('}')) {
    for (;;) {
      ws();
      if (!eat('"')) throw unexpected('a member name');
      const start = i;
      while (i < s.length && s[i] >= 'a' && s[i] <= 'z') i++;
      const name = s.slice(start, i);
      if (!eat('"')) throw malformed(`unknown member at position ${start - 1}; an envelope has exactly v, kid, iat, exp, nonce, msg and sig`);
      if (!MEMBERS.includes(name)) throw malformed(`unknown member "${name}"; an envelope has exactly v, kid, iat, exp, nonce, msg and sig`);
      if (Object.hasOwn(env, name)) throw malformed(`member "${name}" appears twice`);
      ws();
      if (!eat(':')) throw unexpected("':'");
      ws();
      env[name] = name === 'v' || name === 'iat' || name === 'exp' ? integer(name) : str(name);
      ws();
      if (eat(',')) continue;
      if (eat('}')) break;
      throw unexpected("',' or '}'");
    }
  }
  ws();
  if (i !== s.length) throw malformed(`unexpected data after the envelope at position ${i}`);
  for (const m of MEMBERS) {
    if (!Object.hasOwn(env, m)) throw malformed(`member "${m}" is missing`);
  }
  return { v: env.v, kid: env.kid, iat: env.iat, exp: env.exp, nonce: env.nonce, msg: env.msg, sig: env.sig };
}

// check returns an EnvelopeError for the first member that is not
// well-formed, or null: what parse guarantees about an envelope.
function check(e) {
  if (e.v !== VERSION) return versionError(e.v);
  if (typeof e.kid !== 'string' || e.kid.length === 0 || e.kid.length > MAX_KID_LEN) {
    return malformed('member "kid" must be 1 to 128 characters: the jti of your token');
  }
  if (!/^[\x21-\x7e]+$/.test(e.kid)) return malformed('member "kid" may hold only printable ASCII without spaces');
  for (const m of ['iat', 'exp']) {
    if (!Number.isSafeInteger(e[m]) || e[m] < 0) return malformed(`member "${m}" must be an integer from 0 to 2^53-1 (Unix seconds)`);
  }
  if (!strictB64(e.nonce, NONCE_SIZE)) return malformed('member "nonce" must be 16 bytes in base64url without padding (22 characters)');
  if (typeof e.msg !== 'string' || e.msg === '') return malformed('member "msg" is empty; it carries the command');
  if (!isWellFormed(e.msg)) return malformed('member "msg" is not valid UTF-8');
  if (!strictB64(e.sig, SIG_SIZE)) return malformed('member "sig" must be 32 bytes in base64url without padding (43 characters)');
  return null;
}

function checkTopic(topic) {
  if (typeof topic !== 'string' || topic === '') return malformed('the topic is empty');
  if (topic.includes('\n')) return malformed('the topic contains a newline');
  return null;
}

// ---- verifying ------------------------------------------------------------

// dur writes whole seconds as Go's time.Duration does: 12s, 2m0s, 1h0m5s.
function dur(n) {
  if (n < 60) return `${n}s`;
  const h = Math.floor(n / 3600);
  const m = Math.floor((n % 3600) / 60);
  return (h > 0 ? `${h}h` : '') + `${m}m${n % 60}s`;
}

/**
 * Checks env (from parse) as the broker does, in the same order: kid ==
 * the expected kid, iat <= now + skew, now < exp (expired from the second exp
 * on, no skew), 0 < exp - iat <= maxLifetime, then the signature. Resolves to
 * env or throws EnvelopeError. now: Date or ms since the epoch.
 */
export async function verify(env, { key, topic, kid, now, policy } = {}) {
  const p = effective(policy);
  const bad = check(env) || checkTopic(topic);
  if (bad) throw bad;
  if (env.kid !== kid) {
    throw new EnvelopeError(Reason.KID, `envelope is signed for key id ${JSON.stringify(env.kid)} but the sender's token has jti ${JSON.stringify(kid)}`);
  }
  const ms = nowMs(now);
  const n = nowSeconds(ms);
  if (env.iat > Math.floor((ms + p.skewSeconds * 1000) / 1000)) {
    throw new EnvelopeError(Reason.FUTURE, `envelope issued ${dur(env.iat - n)} in the future (iat ${env.iat}, now ${n}, allowed skew ${p.skewSeconds}s); check the sender's clock`);
  }
  if (n >= env.exp) {
    const ago = n > env.exp ? dur(n - env.exp) + ' ago' : 'just now';
    throw new EnvelopeError(Reason.EXPIRED, `envelope expired ${ago} (exp ${env.exp}, now ${n}); seal commands just before sending them`);
  }
  const life = env.exp - env.iat;
  if (life <= 0) throw new EnvelopeError(Reason.LIFETIME, `envelope exp ${env.exp} is not after its iat ${env.iat}`);
  if (life > Math.floor(p.maxLifetimeSeconds)) {
    throw new EnvelopeError(Reason.LIFETIME, `envelope lifetime exp-iat is ${dur(life)}, more than the allowed ${dur(p.maxLifetimeSeconds)}`);
  }
  let cryptoKey;
  try {
    cryptoKey = await importKey(key);
  } catch {
    throw new EnvelopeError(Reason.SIGNATURE, 'no message key to check the envelope\'s signature with (want at least 16 bytes)');
  }
  const ok = await subtle().verify('HMAC', cryptoKey, base64urlDecode(env.sig), utf8.encode(signingInput(topic, env.kid, env.iat, env.exp, env.nonce, env.msg)));
  if (!ok) throw new EnvelopeError(Reason.SIGNATURE, 'envelope signature does not match: wrong message key, another topic, or altered content');
  return env;
}

/**
 * parse + verify: resolves to the envelope, or rejects with EnvelopeError.
 * It does not remember nonces; a receiver must also refuse replays.
 */
export async function open(payload, { key, topic, kid, now, policy } = {}) {
  return verify(parse(payload, policy), { key, topic, kid, now, policy });
}
