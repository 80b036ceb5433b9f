// The web app's network side: the token API (/api/token) and one MQTT.js
// connection over WSS per token. No DOM here; app.mjs draws what it reports.

import mqtt from './vendor/mqtt.esm.js';
import { decodeClaims, randomSuffix, reasonText } from './model.mjs';

/** Token types of POST /api/token (docs/configuration.md, auth package). */
export const TokenType = Object.freeze({
  agentCredential: 'urn:homemq:token-type:agent-credential',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
});

/**
 * exchange trades a subject token for a homemq token at POST /api/token and
 * returns {token, msgKey, expiresIn}. A refusal throws with the server's
 * error_description.
 */
export async function exchange(subjectToken, subjectTokenType) {
  let res;
  try {
    res = await fetch('/api/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: subjectToken,
        subject_token_type: subjectTokenType,
      }),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    throw new Error(`the token API could not be reached: ${e.message}`);
  }
  let body = {};
  try {
    body = await res.json();
  } catch {
    // an answer that is not JSON is reported by status below
  }
  if (!res.ok) {
    const what = body.error_description || body.error || res.statusText;
    throw new Error(`the token API refused (${res.status}${body.error ? ' ' + body.error : ''}): ${what}`);
  }
  if (typeof body.access_token !== 'string' || typeof body.msg_key !== 'string') {
    throw new Error('the token API answered without access_token and msg_key');
  }
  return { token: body.access_token, msgKey: body.msg_key, expiresIn: body.expires_in };
}

/**
 * deviceSignIn calls the sign-in API (docs/webapp.md): 'invite' redeems
 * an invite ({invite, device}), 'refresh' trades this device's sign-in
 * cookie for a token, 'signout' removes it. The cookie is HttpOnly: the
 * page never sees it, the browser sends it to /api/signin/ only. It
 * returns {token, msgKey, expiresIn}, or null for signout and for a
 * refresh on a device that is not signed in; a refusal throws an Error
 * whose signInAPI is what and status the HTTP status.
 */
export async function deviceSignIn(what, body = {}) {
  let res;
  try {
    res = await fetch(`/api/signin/${what}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
      credentials: 'same-origin',
      redirect: 'error',
    });
  } catch (e) {
    throw new Error(`the sign-in API could not be reached: ${e.message}`);
  }
  if (what === 'signout' || res.status === 204) return null;
  let answer = {};
  try {
    answer = await res.json();
  } catch {
    // reported by status below
  }
  if (!res.ok) {
    throw Object.assign(new Error(answer.error_description || `the sign-in API answered ${res.status}`), { signInAPI: what, status: res.status });
  }
  return { token: answer.access_token, msgKey: answer.msg_key, expiresIn: answer.expires_in, device: true };
}

/** brokerURL is the broker's MQTT-over-WebSocket endpoint on this origin. */
export function brokerURL(loc = location) {
  return `${loc.protocol === 'http:' ? 'ws' : 'wss'}://${loc.host}/mqtt`;
}

/** Codes after which reconnecting with the same token cannot help. */
const FINAL = new Set([0x85, 0x86, 0x87, 0x8c, 0x8e, 0x9c, 0x9d, 0xa0]);

/**
 * Link is one MQTT 5 connection for one token. It reports through the
 * callbacks in `on`: message(topic, text), status(state, detail, code) with
 * state 'connecting' | 'connected' | 'reconnecting' | 'closed' (code: the
 * MQTT 5 reason code of a refusal, if any), and refused(what). A refused
 * open rejects with an Error whose code is that reason code.
 */
export class Link {
  constructor({ token, msgKey }, on) {
    this.token = token;
    this.msgKey = msgKey;
    this.claims = decodeClaims(token);
    this.on = on;
    this.client = null;
    this.closed = false;
  }

  /**
   * open connects and subscribes to filters; it resolves with the SUBACK
   * grants ({filter, ok, code}) or rejects with the CONNACK refusal.
   */
  open(filters) {
    const { sub, exp } = this.claims;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          clearTimeout(giveUp);
          this.close();
          reject(err);
        }
      };
      // A WebSocket that cannot connect may never raise an error: MQTT.js
      // just retries. Give up on the first connection after a while.
      const giveUp = setTimeout(() => fail(new Error(`could not connect to ${brokerURL()} within 20 s`)), 20_000);
      this.on.status?.('connecting', '');
      const client = mqtt.connect(brokerURL(), {
        protocolVersion: 5,
        clientId: `${sub}/web-${randomSuffix()}`,
        username: sub,
        password: this.token,
        clean: true,
        keepalive: 30,
        // MQTT.js's default browser timers run in a Worker built from a blob:
        // URL, which the CSP forbids (no blob: scripts, Trusted Types).
        timerVariant: 'native',
        connectTimeout: 10_000,
        reconnectPeriod: 3_000,
        resubscribe: true,
        queueQoSZero: false,
        properties: { sessionExpiryInterval: 0, requestProblemInformation: true },
      });
      this.client = client;
      client.on('connect', () => {
        this.on.status?.('connected', '');
        if (settled) return; // a reconnect: MQTT.js subscribes again itself
        const subs = Object.fromEntries(filters.map((f) => [f, { qos: 1 }]));
        if (filters.length === 0) {
          settled = true;
          clearTimeout(giveUp);
          resolve([]);
          return;
        }
        client.subscribe(subs, (err, granted) => {
          if (err && !granted) return fail(new Error(`subscribing failed: ${err.message}`));
          settled = true;
          clearTimeout(giveUp);
          resolve((granted ?? []).map((g) => ({ filter: g.topic, ok: g.qos < 0x80, code: g.qos })));
        });
      });
      client.on('message', (topic, payload) => this.on.message?.(topic, new TextDecoder().decode(payload)));
      client.on('error', (err) => {
        // A CONNACK refusal carries the MQTT 5 code in err.code; MQTT.js
        // keeps the CONNACK's properties (with the broker's reason string).
        if (typeof err.code === 'number' && FINAL.has(err.code)) {
          const why = client['_serverProperties']?.reasonString || err.message;
          const detail = `the broker refused the connection (${reasonText(err.code)}): ${why}`;
          this.on.status?.('closed', detail, err.code);
          fail(Object.assign(new Error(detail), { code: err.code }));
          return;
        }
        if (!settled) fail(new Error(`cannot connect to ${brokerURL()}: ${err.message}`));
      });
      client.on('disconnect', (packet) => {
        const code = packet.reasonCode ?? 0;
        const why = packet.properties?.reasonString ?? '';
        const detail = `the broker closed the connection (${reasonText(code)})${why ? ': ' + why : ''}`;
        if (FINAL.has(code)) {
          this.on.status?.('closed', detail, code);
          this.close();
        } else {
          this.on.status?.('reconnecting', detail);
        }
      });
      client.on('reconnect', () => {
        if (Date.now() / 1000 >= exp) {
          this.on.status?.('closed', 'the token has expired: sign in again');
          this.close();
          return;
        }
        this.on.status?.('reconnecting', 'connection lost, reconnecting…');
      });
      client.on('offline', () => {
        if (!this.closed) this.on.status?.('reconnecting', 'offline, reconnecting…');
      });
    });
  }

  /** connected reports whether the connection is up. */
  get connected() {
    return !this.closed && this.client?.connected === true;
  }

  /**
   * publish sends payload at QoS 1 and resolves with the broker's answer:
   * {ok: true} on PUBACK success, or {ok: false, code, reason} with the
   * MQTT 5 reason code and the broker's reason string.
   */
  publish(topic, payload, timeoutMs = 10_000) {
    return new Promise((resolve) => {
      if (!this.connected) {
        resolve({ ok: false, code: undefined, reason: 'not connected to the broker' });
        return;
      }
      const timer = setTimeout(() => resolve({ ok: false, code: undefined, reason: 'no answer from the broker within 10 s' }), timeoutMs);
      this.client.publish(topic, payload, { qos: 1, retain: false }, (err, packet) => {
        clearTimeout(timer);
        if (!err) {
          resolve({ ok: true });
          return;
        }
        const code = typeof err.code === 'number' ? err.code : packet?.reasonCode;
        resolve({ ok: false, code, reason: packet?.properties?.reasonString || err.message });
      });
    });
  }

  /** close ends the connection without reconnecting. */
  close() {
    this.closed = true;
    this.client?.end(true);
  }
}
