package e2e

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMQTTListenersSurviveDescriptorExhaustion: a flood that uses up the
// process's file descriptors makes accept fail for a moment (EMFILE). The
// MQTT listeners wait and accept again once descriptors are free, instead
// of stopping for good, and the connection that arrived meanwhile is served.
func TestMQTTListenersSurviveDescriptorExhaustion(t *testing.T) {
	b := startBroker(t)
	a := b.Addrs()
	tok := b.mint("user:owner", "h1=admin")

	// fill the descriptor table, keeping one free per listener for the
	// client's own socket: the broker's accept then finds none
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur > 1<<16 {
		t.Skipf("descriptor limit %d is too high to exhaust in a test", lim.Cur)
	}
	var filler []*os.File
	release := func() {
		for _, f := range filler {
			_ = f.Close()
		}
		filler = nil
	}
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			release()
			t.Fatal(err)
		}
		filler = append(filler, f)
	}
	var pending []net.Conn
	for _, name := range []string{"mqtt", "mqtts"} {
		_ = filler[len(filler)-1].Close()
		filler = filler[:len(filler)-1]
		c, err := net.Dial("tcp", a[name])
		if err != nil {
			release()
			t.Fatalf("dial %s with one descriptor free: %v", name, err)
		}
		pending = append(pending, c)
	}
	time.Sleep(100 * time.Millisecond) // the broker's accepts fail now, with no descriptor left
	release()
	for _, c := range pending {
		_ = c.Close()
	}

	// descriptors are free again: both listeners still serve
	b.mustV5(overPlain, "user:owner/plain", tok)
	b.mustV5(overTLS, "user:owner/tls", tok)
}
