package agent

import (
	"fmt"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func queued(o *outbox) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, m := range o.queue {
		out = append(out, string(m.payload))
	}
	return out
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestOutboxKeepsOrderAndTheNewestState(t *testing.T) {
	o := newOutbox()
	o.push(outMsg{topic: "s/lamp", payload: []byte("lamp on"), state: "lamp"})
	o.push(outMsg{topic: "a/lamp", payload: []byte("ack 1")})
	o.push(outMsg{topic: "s/door", payload: []byte("door on"), state: "door"})
	o.push(outMsg{topic: "s/lamp", payload: []byte("lamp off"), state: "lamp"})
	o.push(outMsg{topic: "e/btn", payload: []byte("event")})
	if got, want := queued(o), []string{"ack 1", "door on", "lamp off", "event"}; !equal(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	o.dropStates()
	if got, want := queued(o), []string{"ack 1", "event"}; !equal(got, want) {
		t.Fatalf("after dropStates %v, want %v", got, want)
	}
}

func TestOutboxIsBounded(t *testing.T) {
	o := newOutbox()
	for i := 0; i < maxQueued+10; i++ {
		o.push(outMsg{payload: []byte(fmt.Sprint(i))})
	}
	q := queued(o)
	if len(q) != maxQueued || q[0] != "10" || o.drops != 10 {
		t.Fatalf("%d queued starting at %s with %d drops; want %d from 10, 10 drops", len(q), q[0], o.drops, maxQueued)
	}
}

func TestOutboxWaitsForAClient(t *testing.T) {
	o := newOutbox()
	o.push(outMsg{topic: "a", payload: []byte("ack")})
	if _, _, ok := o.next(); ok {
		t.Fatal("next handed out a message while offline")
	}
	// A real paho client that is not connected refuses at once.
	c := mqtt.NewClient(mqtt.NewClientOptions())
	o.attach(c)
	select {
	case <-o.wake:
	default:
		t.Fatal("attach did not wake the publisher")
	}
	got, m, ok := o.next()
	if !ok || got != c || string(m.payload) != "ack" {
		t.Fatalf("next = %v %q %v", got, m.payload, ok)
	}
	if o.track(c, m, c.Publish(m.topic, 1, false, m.payload)) {
		t.Fatal("a refused publish was tracked as sent")
	}
	if got := queued(o); !equal(got, []string{"ack"}) {
		t.Fatalf("queue after a refusal %v, want the ack back in front", got)
	}
	o.detach()
	if _, _, ok := o.next(); ok {
		t.Fatal("next handed out a message after detach")
	}
	if all := o.drain(); len(all) != 1 || string(all[0].payload) != "ack" {
		t.Fatalf("drain = %v", all)
	}
}
