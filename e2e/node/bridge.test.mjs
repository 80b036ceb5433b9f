// The official SignalR client (@microsoft/signalr) against homemq's
// /signalr/home hub over one transport. Run by e2e/bridge_test.go with
// node --test; every check is what an app written for ASP.NET Core SignalR
// would see.
//
// Env: URL (https://…/signalr/home), TRANSPORT (WebSockets, ServerSentEvents,
// LongPolling), NODE_EXTRA_CA_CERTS; TOKEN, KID, MSG_KEY (user:ann, admin of
// h1); VIEWER_TOKEN, VIEWER_KID, VIEWER_MSG_KEY (user:vic, viewer of h1);
// SHORT_TOKEN, SHORT_EXP (a token that expires in seconds); AGENT_TOKEN
// (agent:sr, agent in h1); BAD_TOKEN; REVOKE_TOKEN, REVOKE_JTI,
// OPERATOR_TOKEN, ADMIN_URL (to revoke a token of a live connection);
// PI_AGENT (the Pi agent's id).
// Devices: h1/{PI_AGENT}/lamp is the Pi agent on simulated GPIO (a switch);
// h1/pi/lamp is an MQTT client run by the Go test (acks every command,
// publishes "live-N" state ticks); h1/sr/door is answered here by a
// SignalR agent.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { seal } from "../../clients/js/envelope.mjs";

const E = process.env;
const transport = signalR.HttpTransportType[E.TRANSPORT];
assert.ok(transport, `unknown TRANSPORT ${E.TRANSPORT}`);

const open = [];
after(async () => {
  await Promise.all(open.map((c) => c.stop().catch(() => {})));
});

/** A hub connection for token, not started; its close error is recorded. */
function hub(token) {
  const c = new signalR.HubConnectionBuilder()
    .withUrl(E.URL, { accessTokenFactory: () => token, transport })
    .configureLogging(signalR.LogLevel.None)
    .build();
  c.closed = new Promise((resolve) => c.onclose((err) => resolve(err ?? null)));
  open.push(c);
  return c;
}

async function started(token) {
  const c = hub(token);
  await c.start();
  assert.equal(c.state, signalR.HubConnectionState.Connected);
  return c;
}

const topic = (home, agent, device) => `homes/${home}/agents/${agent}/devices/${device}/cmd`;

function sealFor(key, kid, home, agent, device, msg) {
  return seal({ key, kid, topic: topic(home, agent, device), msg, ttlSeconds: 30 });
}

/** Resolves with the first value of the promise, or rejects after ms. */
function within(ms, what, p) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// Started first: it must be closed by the server at its expiry while the
// other tests run.
const shortLived = hub(E.SHORT_TOKEN);
const shortStart = shortLived.start();

test("a bad token fails negotiate with 401", async () => {
  const c = hub(E.BAD_TOKEN);
  await assert.rejects(c.start(), (err) => {
    assert.match(String(err), /401/);
    return true;
  });
  const res = await fetch(`${E.URL}/negotiate?negotiateVersion=1`, { method: "POST", headers: { Authorization: `Bearer ${E.BAD_TOKEN}` } });
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /^Bearer .*error="invalid_token"/);
});

test("SendCommand with a valid envelope completes with the device's ack; a replay is refused", async (t) => {
  const c = await started(E.TOKEN);
  const env = await sealFor(E.MSG_KEY, E.KID, "h1", "pi", "lamp", '{"action":"on"}');
  const ack = await c.invoke("SendCommand", "h1", "pi", "lamp", env);
  assert.equal(ack.nonce, JSON.parse(env).nonce);
  assert.equal(ack.ok, true);
  assert.equal(ack.msg, '{"action":"on"}');

  await assert.rejects(c.invoke("SendCommand", "h1", "pi", "lamp", env), (err) => {
    t.diagnostic(`replay: ${err.message}`);
    assert.match(err.message, /replay|already/i);
    return true;
  });
  // the connection survives a refusal
  const again = await c.invoke("SendCommand", "h1", "pi", "lamp", await sealFor(E.MSG_KEY, E.KID, "h1", "pi", "lamp", '{"action":"off"}'));
  assert.equal(again.ok, true);
});

test("SendCommand to the Pi agent completes with its ack: the lamp goes on", async () => {
  const c = await started(E.TOKEN);
  const state = new Promise((resolve) => c.on("State", (home, agent, device, payload) => {
    if (agent === E.PI_AGENT && device === "lamp" && JSON.parse(payload).state === "on") resolve(payload);
  }));
  await c.invoke("Subscribe", "h1");
  const env = await sealFor(E.MSG_KEY, E.KID, "h1", E.PI_AGENT, "lamp", '{"action":"on"}');
  const ack = await c.invoke("SendCommand", "h1", E.PI_AGENT, "lamp", env);
  assert.equal(ack.nonce, JSON.parse(env).nonce);
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.state, "on");
  await within(5000, "the lamp's new state", state);
  // An action the device does not take is refused by the agent itself.
  const bad = await c.invoke("SendCommand", "h1", E.PI_AGENT, "lamp",
    await sealFor(E.MSG_KEY, E.KID, "h1", E.PI_AGENT, "lamp", '{"action":"pulse"}'));
  assert.equal(bad.ok, false);
  assert.equal(bad.state, "on");
});

test("the original CommandHub names work: SendCommandAsync(target, message)", async () => {
  const c = await started(E.TOKEN);
  const env = await sealFor(E.MSG_KEY, E.KID, "h1", "pi", "lamp", '{"action":"toggle"}');
  const ack = await c.invoke("SendCommandAsync", "h1/pi/lamp", env);
  assert.equal(ack.nonce, JSON.parse(env).nonce);
});

test("a command to another home is refused", async (t) => {
  const c = await started(E.TOKEN);
  const env = await sealFor(E.MSG_KEY, E.KID, "h2", "pi", "lamp", '{"action":"on"}');
  await assert.rejects(c.invoke("SendCommand", "h2", "pi", "lamp", env), (err) => {
    t.diagnostic(`other home: ${err.message}`);
    assert.match(err.message, /refused/);
    assert.match(err.message, /0x87/);
    return true;
  });
});

test("a viewer's command is refused", async (t) => {
  const c = await started(E.VIEWER_TOKEN);
  const env = await sealFor(E.VIEWER_MSG_KEY, E.VIEWER_KID, "h1", "pi", "lamp", '{"action":"on"}');
  await assert.rejects(c.invoke("SendCommand", "h1", "pi", "lamp", env), (err) => {
    t.diagnostic(`viewer: ${err.message}`);
    assert.match(err.message, /refused.*0x87/);
    return true;
  });
});

test("an envelope signed for another device is refused", async (t) => {
  const c = await started(E.TOKEN);
  const env = await sealFor(E.MSG_KEY, E.KID, "h1", "pi", "door", '{"action":"on"}');
  await assert.rejects(c.invoke("SendCommand", "h1", "pi", "lamp", env), (err) => {
    t.diagnostic(`moved envelope: ${err.message}`);
    assert.match(err.message, /signature/);
    return true;
  });
});

test("Subscribe delivers state changes made by an MQTT client; another home is refused", async (t) => {
  const c = await started(E.TOKEN);
  const live = new Promise((resolve) => c.on("State", (home, agent, device, payload) => {
    if (home === "h1" && agent === "pi" && device === "lamp" && payload.startsWith("live-")) resolve(payload);
  }));
  const res = await c.invoke("Subscribe", "h1");
  t.diagnostic(`Subscribe(h1): ${JSON.stringify(res)}`);
  assert.deepEqual(res.subscribed.length, 3);
  assert.deepEqual(res.refused, []);
  assert.match(await within(10000, "a live State", live), /^live-\d+$/);
  await assert.rejects(c.invoke("Subscribe", "h2"), (err) => {
    t.diagnostic(`Subscribe(h2): ${err.message}`);
    assert.match(err.message, /Subscribe\(h2\) refused/);
    return true;
  });

  // A viewer may read state, event and status too.
  const v = await started(E.VIEWER_TOKEN);
  const vlive = new Promise((resolve) => v.on("State", (home, agent, device, payload) => resolve(payload)));
  await v.invoke("Subscribe", "h1");
  assert.ok(await within(10000, "a State for the viewer", vlive));
});

test("an agent over SignalR receives its commands as invocations and answers with Ack", async () => {
  const agent = await started(E.AGENT_TOKEN);
  const legacy = new Promise((resolve) => agent.on("ReceiveCommandAsync", (message) => resolve(message)));
  agent.on("Command", (home, agentId, device, envelope) => {
    const { nonce, msg } = JSON.parse(envelope);
    agent.invoke("Ack", home, agentId, device, JSON.stringify({ nonce, ok: true, state: JSON.parse(msg).action }));
  });
  const c = await started(E.TOKEN);
  const env = await sealFor(E.MSG_KEY, E.KID, "h1", "sr", "door", '{"action":"unlock"}');
  const ack = await c.invoke("SendCommand", "h1", "sr", "door", env);
  assert.deepEqual(ack, { nonce: JSON.parse(env).nonce, ok: true, state: "unlock" });
  assert.equal(await within(5000, "ReceiveCommandAsync", legacy), env);
  // An agent may not answer for another agent's device.
  await assert.rejects(agent.invoke("Ack", "h1", "pi", "lamp", '{"nonce":"x"}'), /refused.*0x87/);
});

test("a revoked token's connection is closed at once", async (t) => {
  const c = await started(E.REVOKE_TOKEN);
  const res = await fetch(E.ADMIN_URL, {
    method: "POST",
    headers: { Authorization: `Bearer ${E.OPERATOR_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ jti: E.REVOKE_JTI }),
  });
  assert.equal(res.status, 200);
  const err = await within(10000, "the close after revocation", c.closed);
  t.diagnostic(`revoked: ${err?.message}`);
  // The Close message says "token revoked"; a long poll that starts after
  // the revocation is refused instead with 401 "token was revoked".
  assert.match(String(err?.message), /token (was )?revoked/);
});

test("a short-lived token's connection is closed at its expiry", async (t) => {
  await shortStart;
  const err = await within(20000, "the close at expiry", shortLived.closed);
  assert.ok(err, "closed without an error");
  t.diagnostic(`expired: ${err.message}`);
  assert.match(err.message, /token expired/);
  assert.ok(Date.now() >= Number(E.SHORT_EXP) * 1000, "closed before the token's exp");
  assert.equal(shortLived.state, signalR.HubConnectionState.Disconnected);
});
