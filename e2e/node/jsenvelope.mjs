// A command sealed by clients/js/envelope.mjs (WebCrypto) and sent with
// MQTT.js over WSS: the first publish must be accepted, the same bytes again
// refused as a replay. Prints one JSON object.
// Env: URL, TOKEN, MSG_KEY, KID, SUB, TOPIC; NODE_EXTRA_CA_CERTS for the CA.
import mqtt from "mqtt";
import { seal } from "../../clients/js/envelope.mjs";

const { URL: url, TOKEN, MSG_KEY, KID, SUB, TOPIC } = process.env;
const result = {};
const client = await mqtt.connectAsync(url, {
  clientId: `${SUB}/js-envelope`, username: SUB, password: TOKEN,
  protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000,
});
const payload = await seal({ key: MSG_KEY, topic: TOPIC, kid: KID, msg: '{"action":"on"}', ttlSeconds: 30 });
result.payload = payload;

async function publish() {
  try {
    const pk = await client.publishAsync(TOPIC, payload, { qos: 1 });
    return { code: pk?.reasonCode ?? 0 };
  } catch (err) {
    return { code: err.code, reason: String(err.message) };
  }
}
result.first = await publish();
result.again = await publish();
await client.endAsync();
console.log(JSON.stringify(result));
