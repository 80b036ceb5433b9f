// MQTT.js over WSS against homemq, as an agent: subscribes to its cmd topic,
// publishes its state, waits for one command; then connects with a bad token
// (must be refused with the CONNACK reason code). Prints one JSON object.
// Env: URL (wss://…/mqtt), TOKEN, BAD_TOKEN, CLIENT_ID, SUB, CMD_TOPIC, STATE_TOPIC;
// NODE_EXTRA_CA_CERTS for the CA.
import mqtt from "mqtt";

const { URL: url, TOKEN, BAD_TOKEN, CLIENT_ID, SUB, CMD_TOPIC, STATE_TOPIC } = process.env;

function connect(password, clientId) {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, {
      clientId, username: SUB, password, protocolVersion: 5,
      reconnectPeriod: 0, connectTimeout: 5000,
    });
    c.on("connect", () => resolve({ client: c }));
    c.on("error", (err) => { c.end(true); resolve({ error: err }); });
  });
}

const result = {};
const good = await connect(TOKEN, CLIENT_ID);
if (good.error) {
  result.goodError = String(good.error.message);
} else {
  const c = good.client;
  const got = new Promise((resolve) => c.on("message", (t, m) => resolve({ topic: t, payload: m.toString() })));
  const granted = await c.subscribeAsync(CMD_TOPIC, { qos: 1 });
  result.granted = granted.map((g) => g.qos);
  await c.publishAsync(STATE_TOPIC, "on", { qos: 1, retain: true });
  result.received = await Promise.race([got, new Promise((r) => setTimeout(() => r(null), 10000))]);
  await c.endAsync();
}
const bad = await connect(BAD_TOKEN, CLIENT_ID);
if (bad.error) {
  result.badCode = bad.error.code;
  result.badMessage = String(bad.error.message);
} else {
  await bad.client.endAsync();
}
console.log(JSON.stringify(result));
