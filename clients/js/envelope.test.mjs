// Run with: node --test clients/js/
// Checks envelope.mjs against every vector of envelope/testdata/vectors.json
// (the Go package checks the same file) and a few round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  VERSION, Reason, EnvelopeError, deriveKey, importKey, seal, parse, verify, open,
  signingInput, base64urlEncode, base64urlDecode, defaultPolicy,
} from './envelope.mjs';

const vectors = JSON.parse(readFileSync(new URL('../../envelope/testdata/vectors.json', import.meta.url), 'utf8'));
const policy = {
  skewSeconds: vectors.policy.skew_seconds,
  maxLifetimeSeconds: vectors.policy.max_lifetime_seconds,
  maxSize: vectors.policy.max_size,
};
const hex = (b) => Buffer.from(b).toString('hex');
const fromHex = (h) => new Uint8Array(Buffer.from(h, 'hex'));

test('the vectors use the default policy', () => {
  assert.deepEqual(policy, defaultPolicy());
  assert.ok(vectors.valid.length >= 4 && vectors.invalid.length >= 40);
});

for (const v of vectors.valid) {
  test(`valid: ${v.name}`, async () => {
    const key = await deriveKey(fromHex(v.master_hex), v.jti);
    assert.equal(hex(key), v.key_hex);
    assert.equal(base64urlEncode(key), v.key_b64url);
    assert.equal(signingInput(v.topic, v.kid, v.iat, v.exp, v.nonce, v.msg), v.signing_input);
    const sealed = await seal({ key, topic: v.topic, kid: v.kid, msg: v.msg, now: v.iat * 1000, ttlSeconds: v.exp - v.iat, nonce: v.nonce });
    assert.equal(sealed, v.envelope, 'seal must give the vector envelope byte for byte');
    const want = { v: VERSION, kid: v.kid, iat: v.iat, exp: v.exp, nonce: v.nonce, msg: v.msg, sig: v.sig };
    for (const payload of [v.envelope, ...(v.equivalent_payloads ?? [])]) {
      for (const input of [payload, new TextEncoder().encode(payload)]) {
        const env = await open(input, { key: v.key_b64url, topic: v.topic, kid: v.kid, now: new Date(v.now * 1000), policy });
        assert.deepEqual(env, want);
      }
    }
  });
}

for (const v of vectors.invalid) {
  test(`invalid: ${v.name} → ${v.reason}`, async () => {
    const payload = v.payload_b64 !== undefined ? new Uint8Array(Buffer.from(v.payload_b64, 'base64')) : v.payload;
    await assert.rejects(
      open(payload, { key: fromHex(v.key_hex), topic: v.topic, kid: v.kid, now: v.now * 1000, policy }),
      (err) => {
        assert.ok(err instanceof EnvelopeError, `want an EnvelopeError, got ${err}`);
        assert.equal(err.reason, v.reason, err.message);
        return true;
      },
    );
    if (v.payload_b64 === undefined) {
      // The same bytes as a Uint8Array are refused for the same reason.
      await assert.rejects(
        open(new TextEncoder().encode(v.payload), { key: fromHex(v.key_hex), topic: v.topic, kid: v.kid, now: v.now * 1000, policy }),
        (err) => err.reason === v.reason,
      );
    }
  });
}

test('seal then open with a fresh nonce and the current time', async () => {
  const key = await deriveKey(new Uint8Array(32).fill(7), 'jti-1');
  const topic = 'homes/h1/agents/pi1/devices/lamp/cmd';
  const a = await seal({ key: base64urlEncode(key), topic, kid: 'jti-1', msg: '{"action":"on"}' });
  const b = await seal({ key: await importKey(key), topic, kid: 'jti-1', msg: '{"action":"on"}' });
  const ea = await open(a, { key, topic, kid: 'jti-1' });
  const eb = await open(b, { key, topic, kid: 'jti-1' });
  assert.notEqual(ea.nonce, eb.nonce);
  assert.equal(ea.exp - ea.iat, 30);
  assert.ok(Math.abs(ea.iat - Date.now() / 1000) < 5);
  await assert.rejects(open(a, { key, topic: topic.replace('lamp', 'door'), kid: 'jti-1' }), { reason: Reason.SIGNATURE });
  await assert.rejects(open(a, { key, topic, kid: 'jti-2' }), { reason: Reason.KID });
  await assert.rejects(open(a, { key, topic, kid: 'jti-1', now: Date.now() + 31000 }), { reason: Reason.EXPIRED });
  await assert.rejects(verify(parse(a), { key: new Uint8Array(32), topic, kid: 'jti-1' }), { reason: Reason.SIGNATURE });
});

test('the time checks at their edges, with other policies', async () => {
  const key = new Uint8Array(32).fill(1);
  const topic = 't';
  const at = async (iat, ttl, now, pol) => {
    const p = await seal({ key, topic, kid: 'k', msg: 'on', now: iat * 1000, ttlSeconds: ttl });
    try {
      await open(p, { key, topic, kid: 'k', now: now * 1000, policy: pol });
      return '';
    } catch (err) {
      return err.reason;
    }
  };
  const T = 1767225600;
  assert.equal(await at(T, 30, T + 29.999), '');
  assert.equal(await at(T, 30, T + 30), Reason.EXPIRED);
  assert.equal(await at(T + 5, 30, T), '');
  assert.equal(await at(T + 6, 30, T), Reason.FUTURE);
  assert.equal(await at(T + 1, 30, T, { skewSeconds: -1 }), Reason.FUTURE);
  assert.equal(await at(T, 61, T), Reason.LIFETIME);
  assert.equal(await at(T, 61, T, {}), Reason.LIFETIME);
  assert.equal(await at(T, 600, T, { maxLifetimeSeconds: 600 }), '');
  assert.equal(await at(T, 3600, T, { maxLifetimeSeconds: 7200 }), '');
  assert.equal(await at(T, 3601, T, { maxLifetimeSeconds: 7200 }), Reason.LIFETIME);
});

test('seal refuses what no receiver accepts', async () => {
  const key = new Uint8Array(32);
  const ok = { key, topic: 't', kid: 'k', msg: 'on' };
  for (const bad of [
    { key: new Uint8Array(15) }, { key: 'not base64!' }, { topic: '' }, { topic: 'a\nb' }, { kid: '' },
    { kid: 'a b' }, { kid: 'k'.repeat(129) }, { msg: '' }, { msg: '\ud800' }, { nonce: 'short' },
    { ttlSeconds: 0 }, { ttlSeconds: 1.5 }, { now: -5000 },
  ]) {
    await assert.rejects(seal({ ...ok, ...bad }), TypeError, JSON.stringify(bad));
  }
});

test('base64url helpers', () => {
  for (let n = 0; n < 40; n++) {
    const b = crypto.getRandomValues(new Uint8Array(n));
    const s = base64urlEncode(b);
    assert.match(s, /^[A-Za-z0-9_-]*$/);
    assert.deepEqual(base64urlDecode(s), b);
  }
  for (const bad of ['a', 'ab=', 'a+b/', 'ab cd', 'ab\ncd']) {
    assert.throws(() => base64urlDecode(bad), TypeError, bad);
  }
});
