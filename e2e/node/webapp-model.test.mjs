// Unit tests of the web app's pure helpers (webapp/static/model.mjs), run
// with `node --test` by e2e/webapp_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actionsFor, canCommand, commandTopic, decodeClaims, filtersFor, formatRemaining,
  parseAck, parseState, parseTokenInput, parseTopic, reasonText, refreshAt,
} from '../../webapp/static/model.mjs';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims) => `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64(claims)}.c2ln`;
const KEY = 'A'.repeat(43);

test('decodeClaims reads what the page shows and refuses what it cannot use', () => {
  const c = decodeClaims(jwt({ sub: 'user:ann', jti: 'j1', iat: 100, exp: 1000, homes: { h1: 'admin', 'Bad Home': 'admin', h2: 7 } }));
  assert.deepEqual(c, { sub: 'user:ann', jti: 'j1', iat: 100, exp: 1000, homes: { h1: 'admin' }, operator: false });
  for (const [tok, msg] of [
    ['abc', /three base64url parts/],
    ['a.!!!.c', /not base64url JSON/],
    [`a.${Buffer.from('[1]').toString('base64url')}.c`, /not a JSON object/],
    [jwt({ jti: 'j', exp: 1 }), /no subject/],
    [jwt({ sub: 'user:a', exp: 1 }), /no id \(jti\)/],
    [jwt({ sub: 'user:a', jti: 'j' }), /no expiry/],
  ]) assert.throws(() => decodeClaims(tok), msg, tok);
});

test('parseTokenInput takes a bare token, token mint --json or a token API answer', () => {
  const t = jwt({ sub: 'user:a', jti: 'j', exp: 1 });
  assert.deepEqual(parseTokenInput(`  ${t}\n`), { token: t, msgKey: '' });
  assert.deepEqual(parseTokenInput(t.slice(0, 10) + '\n' + t.slice(10), ` ${KEY} `), { token: t, msgKey: KEY });
  assert.deepEqual(parseTokenInput(JSON.stringify({ token: t, msg_key: KEY, exp: 1 })), { token: t, msgKey: KEY });
  assert.deepEqual(parseTokenInput(JSON.stringify({ access_token: t, msg_key: KEY })), { token: t, msgKey: KEY });
  assert.throws(() => parseTokenInput('  '), /paste a token/);
  assert.throws(() => parseTokenInput('{nope'), /does not parse/);
  assert.throws(() => parseTokenInput(t, 'short'), /43 base64url/);
});

test('roles decide filters and buttons', () => {
  assert.deepEqual(filtersFor('h1', 'viewer'), [
    'homes/h1/agents/+/status', 'homes/h1/agents/+/devices/+/state', 'homes/h1/agents/+/devices/+/event']);
  for (const role of ['admin', 'member', 'service']) {
    assert.ok(canCommand(role), role);
    assert.ok(filtersFor('h1', role).includes('homes/h1/agents/+/devices/+/ack'), role);
  }
  for (const role of ['viewer', 'agent', 'owner', '']) assert.ok(!canCommand(role), role);
  assert.deepEqual(filtersFor('h1', 'agent'), []);
  assert.deepEqual(filtersFor('#', 'admin'), []);
});

test('topics are built and split only for valid ids', () => {
  assert.equal(commandTopic('h1', 'pi', 'lamp'), 'homes/h1/agents/pi/devices/lamp/cmd');
  assert.throws(() => commandTopic('h1', '+', 'lamp'), /not a valid id/);
  assert.deepEqual(parseTopic('homes/h1/agents/pi/status'), { home: 'h1', agent: 'pi', kind: 'status' });
  assert.deepEqual(parseTopic('homes/h1/agents/pi/devices/lamp/ack'), { home: 'h1', agent: 'pi', device: 'lamp', kind: 'ack' });
  for (const t of ['homes/h1/agents/pi', 'homes/H1/agents/pi/status', 'homes/h1/agents/pi/devices/lamp/other',
    'homes/h1/agents/pi/devices/lamp/state/x', 'x/h1/agents/pi/status', 'homes//agents/pi/status']) {
    assert.equal(parseTopic(t), null, t);
  }
});

test('state, ack and refusal texts', () => {
  assert.deepEqual(parseState('on'), { value: 'on', kind: undefined, text: 'on' });
  assert.deepEqual(parseState('{"state":"off","kind":"switch"}'), { value: 'off', kind: 'switch', text: 'off' });
  assert.deepEqual(parseState('{"on":true,"kind":"pulse"}'), { value: 'on', kind: 'pulse', text: 'on' });
  assert.deepEqual(parseState('{"value":false}'), { value: 'off', kind: undefined, text: 'off' });
  assert.equal(parseState('{"x":1}').text, '{"x":1}');
  assert.equal(parseState('x'.repeat(500)).text.length, 120);
  assert.deepEqual(actionsFor('pulse'), ['pulse']);
  assert.deepEqual(actionsFor('input'), []);
  assert.deepEqual(actionsFor(undefined), ['on', 'off', 'toggle']);
  // the agent's acks (agent.Ack)
  assert.deepEqual(parseAck('{"nonce":"n1","ok":true,"result":"on","state":"on"}'), { nonce: 'n1', ok: true, text: 'on' });
  assert.deepEqual(parseAck('{"nonce":"n2","ok":false,"error":"expired","detail":"the command expired 3s ago","state":"off"}'),
    { nonce: 'n2', ok: false, text: 'expired, the command expired 3s ago, state off' });
  assert.deepEqual(parseAck('{"nonce":"n3","ok":true,"result":"pulse","state":"on"}'), { nonce: 'n3', ok: true, text: 'pulse, state on' });
  // other spellings
  assert.deepEqual(parseAck('{"nonce":"n4","ok":true}'), { nonce: 'n4', ok: true, text: 'ok' });
  assert.deepEqual(parseAck('{"nonce":"n5","status":"refused","reason":"busy"}'), { nonce: 'n5', ok: false, text: 'refused, busy' });
  assert.deepEqual(parseAck('{"nonce":"n6","status":"done"}'), { nonce: 'n6', ok: true, text: 'done' });
  assert.deepEqual(parseAck('{"nonce":7}'), { nonce: undefined, ok: undefined, text: '{"nonce":7}' });
  assert.equal(parseAck('done').nonce, undefined);
  assert.equal(reasonText(0x87), '0x87 not authorized');
  assert.equal(reasonText(0x42), '0x42');
});

test('refresh timing and countdown', () => {
  assert.equal(refreshAt(0, 900), 900 - 225); // a quarter of 15 min
  assert.equal(refreshAt(0, 3600), 3600 - 300); // at most 5 min early
  assert.equal(refreshAt(0, 12), 12 - 5); // at least 5 s early
  assert.equal(formatRemaining(0), 'expired');
  assert.equal(formatRemaining(247.9), '4:07');
  assert.equal(formatRemaining(3900), '1 h 05 min');
});
