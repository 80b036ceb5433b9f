// Unit tests of the web app's pure helpers (webapp/static/model.mjs), run
// with `node --test` by e2e/webapp_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ackProblem, canCommand, commandTopic, controlsFor, decodeClaims, deviceUse, filtersFor, formatAge, formatRemaining,
  formatTime, parseAck, parseState, parseTokenInput, parseTopic, plainReason, reasonText, refreshAt, resultLabel,
  stateLabel,
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
  const none = { use: undefined, since: undefined, until: undefined };
  assert.deepEqual(parseState('on'), { value: 'on', kind: undefined, text: 'on', ...none });
  assert.deepEqual(parseState('{"state":"off","kind":"switch"}'), { value: 'off', kind: 'switch', text: 'off', ...none });
  assert.deepEqual(parseState('{"on":true,"kind":"pulse"}'), { value: 'on', kind: 'pulse', text: 'on', ...none });
  assert.deepEqual(parseState('{"value":false}'), { value: 'off', kind: undefined, text: 'off', ...none });
  assert.deepEqual(parseState('{"state":"on","kind":"pulse","use":"door","since":"2026-01-02T03:04:05Z","until":"2026-01-02T03:04:07Z"}'),
    { value: 'on', kind: 'pulse', use: 'door', since: Date.UTC(2026, 0, 2, 3, 4, 5), until: Date.UTC(2026, 0, 2, 3, 4, 7), text: 'on' });
  assert.equal(parseState('{"state":"on","use":"<b>"}').use, undefined);
  assert.equal(parseState('{"x":1}').text, '{"x":1}');
  assert.equal(parseState('x'.repeat(500)).text.length, 120);
});

test('devices are shown as what they are, with absolute commands only', () => {
  assert.equal(deviceUse('pulse', undefined), 'door');
  assert.equal(deviceUse('switch', 'light'), 'light');
  assert.equal(deviceUse('switch', 'lock'), 'lock');
  assert.equal(deviceUse('input', undefined), 'input');
  assert.equal(deviceUse(undefined, 'nonsense'), 'switch');
  for (const use of ['switch', 'light', 'door', 'lock', 'input']) {
    assert.ok(!controlsFor(use).some((c) => c.action === 'toggle' || c.action === 'pulse'), use);
  }
  assert.deepEqual(controlsFor('door').map((c) => [c.action, c.confirm]), [['unlock', true], ['lock', false]]);
  assert.deepEqual(controlsFor('light').map((c) => [c.action, c.confirm]), [['on', false], ['off', false]]);
  assert.deepEqual(controlsFor('input'), []);
  assert.equal(stateLabel('door', 'off'), 'Locked');
  assert.equal(stateLabel('lock', 'on'), 'Unlocked');
  assert.equal(stateLabel('light', 'on'), 'On');
  assert.equal(stateLabel('switch', undefined), '…');
  assert.equal(resultLabel('unlock', 'unlocked'), 'Unlocked');
  assert.equal(resultLabel('unlock', 'extended'), 'Kept unlocked');
  assert.equal(resultLabel('on', 'on'), 'Turned on');
});

test('people read plain words, one time format and ages', () => {
  assert.match(plainReason(0xa0), /sign-in ran out/);
  assert.match(plainReason(0x87, 'viewer'), /look but not control/);
  assert.match(plainReason(0x87, 'admin'), /did not allow/);
  assert.doesNotMatch(plainReason(0x86), /0x/);
  assert.match(ackProblem('expired'), /too late/);
  const noon = new Date(2026, 5, 1, 12, 0, 0).getTime();
  assert.doesNotMatch(formatTime(noon, noon + 1000), /Jun/);
  assert.match(formatTime(noon, noon + 86400_000 * 2), /Jun/);
  assert.equal(formatAge(2), 'just now');
  assert.equal(formatAge(42), '42 s ago');
  assert.equal(formatAge(3 * 60 + 5), '3 min ago');
  assert.equal(formatAge(2 * 86400), '2 days ago');
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
