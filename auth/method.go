package auth

// MQTTMethod is the MQTT 5 authentication method of homemq tokens. A client
// that names it at CONNECT sends its JWT as the authentication data (or as
// the password) and may re-authenticate before exp: an AUTH packet, reason
// 0x19 (re-authenticate), this method and a fresh JWT as data.
const MQTTMethod = "homemq-jwt"
