package e2e

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// fdChildEnv marks the child process that runs the descriptor-exhaustion
// test alone: using up the descriptors of the shared test process would
// race every other goroutine left in it (and starve them).
const fdChildEnv = "HOMEMQ_E2E_FD_CHILD"

// TestMQTTListenersSurviveDescriptorExhaustion: a flood that uses up the
// process's file descriptors makes accept fail for a moment (EMFILE). The
// MQTT listeners wait and accept again once descriptors are free, instead
// of stopping for good, and the connection that arrived meanwhile is served.
// It runs in a process of its own (this test binary, run again for this
// test only), so that nothing else in the process competes for the last
// descriptors.
func TestMQTTListenersSurviveDescriptorExhaustion(t *testing.T) {
	if os.Getenv(fdChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMQTTListenersSurviveDescriptorExhaustion$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), fdChildEnv+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the test in its own process: %v\n%s", err, out)
		}
		return
	}
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
