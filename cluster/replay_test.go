package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReplayWhatTheDeadNodeLeft: of the messages a dead node's consumer
// received, replay returns for a session those it had not acknowledged,
// that match the session's subscriptions at QoS 1, oldest first, an
// expired one included (mochi drops it and answers "expired"); never an
// acknowledged one, one of another session's topic, a QoS 0 one, or a
// forged one.
func TestReplayWhatTheDeadNodeLeft(t *testing.T) {
	n := jetStream(t)("b")
	n.sig = newMsgSigner(NewSecret(), n.log)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := n.js.CreateStream(ctx, jetstream.StreamConfig{Name: MessagesStream, Subjects: []string{msgPrefix + ">"},
		Retention: jetstream.InterestPolicy})
	if err != nil {
		t.Fatal(err)
	}
	home, _ := filterSubject("homes/h1/#")
	dead, err := n.js.CreateOrUpdateConsumer(ctx, MessagesStream, jetstream.ConsumerConfig{Durable: "node-a",
		FilterSubjects: []string{home}, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(topic, payload string, qos byte, expiry int64, forged bool) {
		t.Helper()
		subject, _ := subjectOf(topic)
		hdr, _ := json.Marshal(meta{Node: "c", Topic: topic, QoS: qos, Expiry: expiry})
		msg := &nats.Msg{Subject: subject, Data: []byte(payload), Header: nats.Header{metaHeader: []string{string(hdr)}}}
		n.sig.sign(msg)
		if forged {
			msg.Data = []byte(payload + "!")
		}
		if _, err := n.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	const cmd = "homes/h1/agents/a1/devices/lamp/cmd"
	now := time.Now().Unix()
	publish(cmd, "delivered", 1, 0, false)
	publish(cmd, "left", 1, 0, false)
	publish("homes/h1/agents/a2/devices/lamp/cmd", "other agent", 1, 0, false)
	publish(cmd, "qos 0", 0, 0, false)
	publish(cmd, "forged", 1, 0, true)
	publish(cmd, "expired", 1, now-1, false)
	batch, err := dead.Fetch(6, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		if string(msg.Data()) == "delivered" { // the dead node handled this one only
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}

	s := &Sessions{n: n}
	rec := sessionRecord{Node: "a", Client: "agent:a1", Subs: []packets.Subscription{
		{Filter: "homes/h1/agents/a1/devices/+/cmd", Qos: 1}}}
	got, err := s.replay(ctx, rec, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, pk := range got {
		payloads = append(payloads, string(pk.Payload))
		if pk.TopicName != cmd || pk.FixedHeader.Qos != 1 {
			t.Errorf("replayed %s at QoS %d, want %s at 1", pk.TopicName, pk.FixedHeader.Qos, cmd)
		}
	}
	if len(payloads) != 2 || payloads[0] != "left" || payloads[1] != "expired" {
		t.Fatalf("replayed %q, want [left expired]", payloads)
	}
	if got[1].Expiry != now-1 {
		t.Errorf("the expired message has expiry %d, want %d", got[1].Expiry, now-1)
	}

	// a node that never had a consumer left nothing
	rec.Node = "z"
	if got, err := s.replay(ctx, rec, info.State.LastSeq); err != nil || len(got) != 0 {
		t.Fatalf("replay for a node without a consumer: %d messages, %v", len(got), err)
	}
}
