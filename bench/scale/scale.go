package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"homemq/bench/load"
	"homemq/bench/mqttc"
	"homemq/envelope"
)

// agentBuffers is the read and write buffer of an idle agent's connection.
const agentBuffers = 512

// agentWait is how long the Pi agent waits for its CONNACK and then for
// its SUBACK (agent's connectTimeout and ackWait).
const agentWait = 10 * time.Second

// agentSession is the session expiry an agent asks for: a persistent
// session, as the Pi agent's (clean session off).
const agentSession = 3600

// Agent is one agent-like connection: a persistent session subscribed at
// QoS 1 to its own commands, as the Pi agent is.
type Agent struct {
	Home, Name string
	id         load.Identity
	conn       *mqttc.Conn
}

// cmdFilter is the filter an agent subscribes to.
func (a *Agent) cmdFilter() string { return "homes/" + a.Home + "/agents/" + a.Name + "/devices/+/cmd" }

// NewAgent mints the credentials of agent name in home.
func NewAgent(t load.Target, home, name string) (*Agent, error) {
	id, err := t.Identity("agent:"+name, home, "agent")
	if err != nil {
		return nil, err
	}
	return &Agent{Home: home, Name: name, id: id}, nil
}

// Connect connects the agent to addr and subscribes it to its commands.
func (a *Agent) Connect(ctx context.Context, addr string, timeout time.Duration) error {
	c, err := mqttc.Dial(ctx, mqttc.Options{Addr: addr, ClientID: a.id.ClientID("pi"), Username: a.id.Sub,
		Password: a.id.Password, Keepalive: 300, Timeout: timeout, BufferSize: agentBuffers, SessionExpiry: agentSession})
	if err != nil {
		return fmt.Errorf("bench: connect agent %s to %s: %w", a.Name, addr, err)
	}
	if err := c.Subscribe(a.cmdFilter(), 1, timeout); err != nil {
		_ = c.Close()
		return fmt.Errorf("bench: agent %s on %s: %w", a.Name, addr, err)
	}
	a.conn = c
	return nil
}

// leave is an MQTT 5 DISCONNECT (normal) that sets the session expiry
// to 0: the broker forgets the session.
var leave = []byte{mqttc.TypeDisconnect << 4, 7, 0x00, 5, 0x11, 0, 0, 0, 0}

// Leave ends the agent's session for good (DISCONNECT with a session
// expiry of 0) and closes its connection, so that no offline session of
// one measurement stays subscribed into the next.
func (a *Agent) Leave() {
	if a.conn == nil {
		return
	}
	if a.conn.Write(leave) == nil && a.conn.Flush() == nil {
		_ = a.conn.NetConn().SetReadDeadline(time.Now().Add(2 * time.Second))
		for { // the broker closes the connection
			if _, err := a.conn.ReadPacket(); err != nil {
				break
			}
		}
	}
	a.Close()
}

// Close closes the agent's connection.
func (a *Agent) Close() {
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

// ConnectAgents connects every agent of as to addr with workers dialers.
func ConnectAgents(ctx context.Context, as []*Agent, addr string, workers int) error {
	var (
		next  atomic.Int64
		first atomic.Pointer[error]
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && first.Load() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(as) {
					return
				}
				var err error
				for try := 0; try < 3; try++ {
					if err = as[k].Connect(ctx, addr, 10*time.Second); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

// MakeAgents mints n agents, each in a home of its own named prefix + i.
func MakeAgents(t load.Target, prefix string, n int) ([]*Agent, error) {
	as := make([]*Agent, n)
	for i := range as {
		h := prefix + strconv.Itoa(i)
		var err error
		if as[i], err = NewAgent(t, h, h+"-a"); err != nil {
			return nil, err
		}
	}
	return as, nil
}

// Quantiles are a summary of durations.
type Quantiles struct {
	N             int     `json:"n"`
	P50, P99, Max float64 // milliseconds
}

// Summarize returns the 50th and 99th percentiles (nearest rank) and the
// greatest of ds, in milliseconds. It sorts ds.
func Summarize(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.999999) - 1
		i = max(0, min(i, len(ds)-1))
		return ms(ds[i])
	}
	return Quantiles{N: len(ds), P50: at(0.50), P99: at(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// RoundTrips has an admin on adminAddr send n signed QoS 1 commands, one
// at a time, to an agent on agentAddr that acknowledges each with a QoS 1
// ack: the durations from the command's send to the ack's arrival at the
// admin (after 10 commands of warm-up). A command not answered within 10 s
// is counted in lost.
func RoundTrips(ctx context.Context, t load.Target, home, adminAddr, agentAddr string, n int) (rtts []time.Duration, lost int, err error) {
	agent, err := NewAgent(t, home, home+"-a")
	if err != nil {
		return nil, 0, err
	}
	if err := agent.Connect(ctx, agentAddr, 10*time.Second); err != nil {
		return nil, 0, err
	}
	defer agent.Close()
	admin, err := t.Identity("user:"+home+"-admin", home, "admin")
	if err != nil {
		return nil, 0, err
	}
	ac, err := mqttc.Dial(ctx, mqttc.Options{Addr: adminAddr, ClientID: admin.ClientID("phone"), Username: admin.Sub,
		Password: admin.Password, Keepalive: 300, Timeout: 10 * time.Second})
	if err != nil {
		return nil, 0, fmt.Errorf("bench: connect the admin: %w", err)
	}
	defer ac.Close()
	device := "homes/" + home + "/agents/" + agent.Name + "/devices/d0/"
	if err := ac.Subscribe(device+"ack", 1, 10*time.Second); err != nil {
		return nil, 0, err
	}
	go ackCommands(agent.conn, device+"ack")

	acks := make(chan delivery, 16)
	go func() {
		defer close(acks)
		for {
			p, err := ac.ReadPublish()
			if err != nil {
				return
			}
			acks <- delivery{msg: string(p.Payload), id: p.ID, qos: p.QoS} // acknowledged by the sender loop
		}
	}()
	warm := 10
	for i := 0; i < n+warm && ctx.Err() == nil; i++ {
		msg := "t" + strconv.Itoa(i)
		body, err := envelope.Seal(admin.Key, device+"cmd", admin.JTI, msg, time.Now(), 30*time.Second)
		if err != nil {
			return nil, 0, err
		}
		start := time.Now()
		if err := ac.Write(mqttc.AppendPublish(nil, device+"cmd", ac.NextID(), 1, body)); err != nil {
			return rtts, lost, err
		}
		if err := ac.Flush(); err != nil {
			return rtts, lost, err
		}
		if !waitAck(ac, acks, msg, 10*time.Second) {
			lost++
			continue
		}
		if i >= warm {
			rtts = append(rtts, time.Since(start))
		}
	}
	return rtts, lost, ctx.Err()
}

// delivery is a message the admin received.
type delivery struct {
	msg string
	id  uint16
	qos byte
}

// waitAck waits for the ack carrying msg, acknowledging (PUBACK) and
// skipping older ones.
func waitAck(c *mqttc.Conn, acks <-chan delivery, msg string, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case a, ok := <-acks:
			if !ok {
				return false
			}
			if a.qos > 0 && (c.Puback(a.id) != nil || c.Flush() != nil) {
				return false
			}
			if a.msg == msg {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

// ackCommands is the agent's side of RoundTrips: every command is
// acknowledged (PUBACK) and answered with a QoS 1 ack carrying its msg.
func ackCommands(c *mqttc.Conn, ackTopic string) {
	var buf []byte
	for {
		p, err := c.ReadPublish()
		if err != nil {
			return
		}
		if p.QoS > 0 {
			_ = c.Puback(p.ID)
		}
		msg, ok := envelopeMsg(p.Payload)
		if !ok {
			continue
		}
		buf = mqttc.AppendPublish(buf[:0], ackTopic, c.NextID(), 1, []byte(msg))
		if c.Write(buf) != nil || c.Flush() != nil {
			return
		}
	}
}

// envelopeMsg returns the "msg" string of a command envelope, without
// checking it (the broker did).
func envelopeMsg(b []byte) (string, bool) {
	const key = `"msg":"`
	s := string(b)
	i := strings.Index(s, key)
	if i < 0 {
		return "", false
	}
	s = s[i+len(key):]
	j := strings.IndexByte(s, '"')
	if j < 0 {
		return "", false
	}
	return s[:j], true
}

// Rotate returns addrs starting at index first (modulo their number), as
// the Pi agent orders its brokers after a loss.
func Rotate(addrs []string, first int) []string {
	n := len(addrs)
	if n == 0 {
		return nil
	}
	first = ((first % n) + n) % n
	return append(slices.Clone(addrs[first:]), addrs[:first]...)
}

// Backoff is the Pi agent's wait before its attempt after failures
// failures (1 after a loss): min, then a random time in [min, min·2^(n−1)],
// at most max. r returns a random int64 in [0, n).
func Backoff(lo, hi time.Duration, failures int, r func(n int64) int64) time.Duration {
	top := lo
	for i := 1; i < failures && top < hi; i++ {
		top *= 2
	}
	top = min(top, hi)
	if top <= lo {
		return lo
	}
	return lo + time.Duration(r(int64(top-lo)+1))
}

// Readmission is how a node's agents came back after it was killed.
type Readmission struct {
	Agents int `json:"agents"`
	// Back is how many were connected and subscribed again; Where counts
	// them per node.
	Back  int            `json:"back"`
	Where map[string]int `json:"where"`
	// Times are from the kill to each agent's SUBACK on its new node.
	Times Quantiles `json:"times"`
	// Attempts is the total of connection attempts (one per address tried).
	Attempts int64 `json:"attempts"`
	// Failures counts the failed attempts by what went wrong (the error
	// with the agent and the address left out).
	Failures map[string]int `json:"failures,omitempty"`
}

// failureKind names what went wrong in a failed attempt, without the
// agent, the address or the ports: "connection refused", "no SUBACK in
// time", "no CONNACK in time", "refused 0xNN …", or the error's last part.
func failureKind(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "SUBACK") && strings.Contains(s, "timeout"):
		return "no SUBACK in time"
	case strings.Contains(s, "timeout"), strings.Contains(s, "deadline exceeded"):
		return "no CONNACK in time"
	}
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// Readmit connects the agents to addrs[victim], kills that node with
// kill, and has every agent come back as the Pi agent does: after a loss
// it waits its first backoff (lo), tries the addresses from the one after
// the lost node (agentWait for CONNACK, again for SUBACK), and backs off
// (lo…hi) between rounds. It returns when all are back or after limit.
func Readmit(ctx context.Context, as []*Agent, addrs []string, victim int, kill func(), lo, hi, limit time.Duration) (Readmission, error) {
	if err := ConnectAgents(ctx, as, addrs[victim], 32); err != nil {
		return Readmission{}, err
	}
	res := Readmission{Agents: len(as), Where: map[string]int{}, Failures: map[string]int{}}
	var (
		mu       sync.Mutex
		times    []time.Duration
		attempts atomic.Int64
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var killed time.Time
	ready := make(chan struct{})
	for _, a := range as {
		wg.Go(func() {
			for { // wait for the loss
				if _, err := a.conn.ReadPacket(); err != nil {
					break
				}
			}
			_ = a.conn.Close()
			a.conn = nil
			<-ready
			for failures := 1; ctx.Err() == nil; failures++ {
				t := time.NewTimer(Backoff(lo, hi, failures, rand.Int64N))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				for _, addr := range Rotate(addrs, victim+1) {
					attempts.Add(1)
					err := a.Connect(ctx, addr, agentWait)
					mu.Lock()
					if err == nil {
						times = append(times, time.Since(killed))
						res.Where[addr]++
						mu.Unlock()
						return
					}
					res.Failures[failureKind(err)]++
					mu.Unlock()
				}
			}
		})
	}
	killed = time.Now()
	kill()
	close(ready)
	wg.Wait()
	res.Back, res.Attempts = len(times), attempts.Load()
	res.Times = Summarize(times)
	if res.Back < res.Agents {
		return res, fmt.Errorf("bench: only %d of %d agents came back within %s", res.Back, res.Agents, limit)
	}
	return res, nil
}
