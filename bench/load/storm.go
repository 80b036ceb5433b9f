package load

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"homemq/bench/mqttc"
	"homemq/envelope"
)

// Storm: Conns agents hold persistent sessions with a QoS 1 subscription
// to their cmd topics and go offline; an admin queues one signed command
// for each; the broker is killed (SIGKILL) and started again
// (Target.Restart); then every agent reconnects at once. See runStorm.
const Storm Scenario = "storm"

// stormCommandTTL is the lifetime of the queued commands: long enough to
// outlast the crash and the storm, within homemq's envelope.max_lifetime.
const stormCommandTTL = 50 * time.Second

// stormSession is how long the agents' sessions outlive their connection.
const stormSession = 3600

// StormResult is the part of Result only the storm scenario fills.
type StormResult struct {
	// SessionsPresent counts the reconnects whose CONNACK said the session
	// was still there.
	SessionsPresent int64 `json:"sessions_present,omitempty"`
	// DeliveredSeconds is the time from the first reconnect attempt until
	// the last queued command arrived (0 if some never did).
	DeliveredSeconds float64 `json:"delivered_seconds,omitempty"`
	// CPUSeconds is the broker's CPU time (user and system) from its
	// restart until every agent was served.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// runStorm measures a reconnect storm after a crash. It reports in Seconds
// the time from the first reconnect attempt until every agent had its
// CONNACK, in Connects the agents re-admitted, in Published the commands
// queued (acknowledged by the broker before the crash), in Delivered
// those that reached their agent after it, and in Lost the difference.
func runStorm(ctx context.Context, t Target, s Spec) (Result, error) {
	if t.Restart == nil {
		return Result{}, errors.New("load: storm needs a way to kill and restart the broker")
	}
	if s.Conns <= 0 {
		return Result{}, errors.New("load: storm needs a number of agents")
	}
	home := "s" + strconv.Itoa(s.GroupBase)
	agents := make([]Identity, s.Conns)
	for i := range agents {
		var err error
		if agents[i], err = t.Identity("agent:"+home+"-a"+strconv.Itoa(i), home, "agent"); err != nil {
			return Result{}, err
		}
	}
	var errs errCounter
	r := Result{}
	opts := func(i int) mqttc.Options {
		id := agents[i]
		return mqttc.Options{Addr: t.Addr, TLS: t.TLS, ClientID: id.ClientID("s"), Username: id.Sub, Password: id.Password,
			Keepalive: 300, Timeout: 20 * time.Second, BufferSize: smallBuffers, SessionExpiry: stormSession, LocalIP: sourceIP(i, s.Sources)}
	}
	// 1. Every agent takes a persistent session with its cmd subscription.
	parallel(s.Workers, s.Conns, func(i int) {
		c, err := mqttc.Dial(ctx, opts(i))
		if err != nil {
			errs.add(err)
			return
		}
		defer c.Close()
		if err := c.Subscribe(cmdFilter(agents[i]), 1, 10*time.Second); err != nil {
			errs.add(err)
			return
		}
		_ = c.Disconnect(time.Second)
	})
	// 2. An admin queues one command for each of them.
	admin, err := t.Identity("user:"+home+"-admin", home, "admin")
	if err != nil {
		return r, err
	}
	queued, refused, err := queueCommands(ctx, t, admin, agents)
	r.Published, r.Refused = queued, refused
	if err != nil {
		return r, err
	}
	if !waitUntil(ctx, time.Now().Add(s.Settle)) { // a broker that saves its state now and then gets the chance
		return r, ctx.Err()
	}
	// 3. Crash and restart.
	pid, err := t.Restart(ctx)
	if err != nil {
		return r, fmt.Errorf("load: restart %s: %w", t.Name, err)
	}
	cpu0, _ := CPUSeconds(pid)
	// 4. Every agent reconnects at once and waits for its command.
	var (
		admitted, present, delivered atomic.Int64
		lastAdmit, lastDelivery      atomic.Int64 // ns since start
		wg                           sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	conns := make([]*mqttc.Conn, s.Conns)
	for i := range s.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts(i)
			var c *mqttc.Conn
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var derr error
				if c, derr = mqttc.Dial(ctx, o); derr == nil {
					break
				}
				errs.add(derr)
				time.Sleep(100 * time.Millisecond)
			}
			if c == nil {
				return
			}
			conns[i] = c
			admitted.Add(1)
			storeMax(&lastAdmit, int64(time.Since(start)))
			if c.Connack.SessionPresent {
				present.Add(1)
			}
			_ = c.NetConn().SetReadDeadline(deadline)
			for {
				pk, err := c.ReadPacket()
				if err != nil {
					return
				}
				if pk.Type != mqttc.TypePublish {
					continue
				}
				p, err := mqttc.ParsePublish(pk)
				if err != nil || !strings.HasSuffix(string(p.Topic), "/cmd") {
					continue
				}
				if p.QoS > 0 {
					_ = c.Puback(p.ID)
					_ = c.Flush()
				}
				delivered.Add(1)
				storeMax(&lastDelivery, int64(time.Since(start)))
				_ = c.NetConn().SetReadDeadline(time.Now()) // one command each: done
				return
			}
		}()
	}
	// Once every agent is in and has had a fair chance at its command,
	// the ones still waiting will not get it: end their wait.
	go func() {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if admitted.Load() == int64(s.Conns) && delivered.Load() == queued {
				return
			}
			if admitted.Load() == int64(s.Conns) && time.Since(start.Add(time.Duration(lastAdmit.Load()))) > 5*time.Second {
				for _, c := range conns {
					if c != nil {
						_ = c.NetConn().SetReadDeadline(time.Now())
					}
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	cpu1, _ := CPUSeconds(pid)
	r.Conns, r.Connects = s.Conns, admitted.Load()
	r.Seconds = time.Duration(lastAdmit.Load()).Seconds()
	r.Delivered = delivered.Load()
	r.Lost = max(0, queued-r.Delivered)
	r.SessionsPresent = present.Load()
	if r.Lost == 0 && r.Delivered > 0 {
		r.DeliveredSeconds = time.Duration(lastDelivery.Load()).Seconds()
	}
	r.CPUSeconds = cpu1 - cpu0
	errs.fill(&r)
	if r.Connects < int64(s.Conns) {
		return r, fmt.Errorf("load: only %d of %d agents re-admitted by %s within 60s: %s", r.Connects, s.Conns, t.Name, r.FirstError)
	}
	return r, ctx.Err()
}

func cmdFilter(agent Identity) string {
	return "homes/" + homeOf(agent) + "/agents/" + strings.TrimPrefix(agent.Sub, "agent:") + "/devices/+/cmd"
}

// homeOf is the home of the storm's agent identities ("agent:s0-a12": s0).
func homeOf(agent Identity) string {
	h, _, _ := strings.Cut(strings.TrimPrefix(agent.Sub, "agent:"), "-")
	return h
}

// queueCommands connects admin and publishes one sealed QoS 1 command to
// each agent's cmd topic, within the broker's receive maximum; it returns
// the commands acknowledged and those refused.
func queueCommands(ctx context.Context, t Target, admin Identity, agents []Identity) (acked, refused int64, err error) {
	c, err := mqttc.Dial(ctx, mqttc.Options{Addr: t.Addr, TLS: t.TLS, ClientID: admin.ClientID("q"), Username: admin.Sub,
		Password: admin.Password, Keepalive: 300, Timeout: 10 * time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	window := make(chan struct{}, max(1, min(int(c.Connack.ReceiveMaximum), 64)))
	done := make(chan error, 1)
	go func() {
		for n := 0; n < len(agents); {
			pk, err := c.ReadPacket()
			if err != nil {
				done <- err
				return
			}
			if pk.Type != mqttc.TypePuback {
				continue
			}
			if _, reason, _ := mqttc.ParseAck(pk); reason >= 0x80 {
				refused++
			} else {
				acked++
			}
			n++
			<-window
		}
		done <- nil
	}()
	var buf []byte
	for _, a := range agents {
		topic := "homes/" + homeOf(a) + "/agents/" + strings.TrimPrefix(a.Sub, "agent:") + "/devices/d0/cmd"
		body, err := envelope.Seal(admin.Key, topic, admin.JTI, "queued", time.Now(), stormCommandTTL)
		if err != nil {
			return 0, 0, err
		}
		select {
		case window <- struct{}{}:
		default: // the window is full: send what is buffered, then wait for a PUBACK
			if err := c.Flush(); err != nil {
				return 0, 0, err
			}
			select {
			case window <- struct{}{}:
			case err := <-done: // the reader stopped: the connection is gone
				return acked, refused, fmt.Errorf("load: queuing commands: %v", err)
			}
		}
		buf = mqttc.AppendPublish(buf[:0], topic, c.NextID(), 1, body)
		if err := c.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	if err := c.Flush(); err != nil {
		return 0, 0, err
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		err = errors.New("load: the broker did not acknowledge every queued command within 30s")
	}
	return acked, refused, err
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(workers, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// CPUSeconds returns the user and system CPU time process pid has used,
// from /proc/PID/stat (in clock ticks of 1/100 s).
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("load: read CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; the fields after its ")" are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("load: /proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("load: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return (utime + stime) / 100, nil
}
