package load

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"homemq/bench/mqttc"
	"homemq/envelope"
)

// stampSize is the bytes of send time at the start of a state payload.
const stampSize = 8

// stallTimeout is how long a publisher waits for its window before it
// assumes the messages in it were lost and starts a fresh window.
const stallTimeout = time.Second

// ackBatch is the most PUBACKs a subscriber holds back before it sends
// them, so that a broker's in-flight count follows its deliveries.
const ackBatch = 16

// commandTTL is the lifetime of sealed commands.
const commandTTL = 30 * time.Second

// flow runs the state and command scenarios: publishers and subscribers in
// independent groups. Every subscriber has a window of messages published
// but not yet delivered to it (a publisher takes a token from each before
// it publishes, the subscriber gives one back per delivery), so that no
// broker queue overflows and latency is the broker's, not a backlog's.
type flow struct {
	t         Target
	s         Spec
	base      time.Time
	measuring atomic.Bool
	done      chan struct{}
	errs      errCounter
	groups    []*group
}

type group struct {
	home    string
	fan     int             // deliveries per published message
	sems    []chan struct{} // per subscriber: one token per message in flight to it
	sent    atomic.Int64
	recv    atomic.Int64
	refused atomic.Int64
	stalls  atomic.Int64
	subs    []*mqttc.Conn
	hists   []*Hist
	pubs    []*publisher
}

type publisher struct {
	c     *mqttc.Conn
	topic string
	id    Identity
}

func runFlow(ctx context.Context, t Target, s Spec) (Result, error) {
	f := &flow{t: t, s: s, base: time.Now(), done: make(chan struct{})}
	defer f.closeAll()
	for i := 0; i < s.Groups; i++ {
		g, err := f.connectGroup(ctx, s.GroupBase+i)
		f.groups = append(f.groups, g)
		if err != nil {
			return Result{}, err
		}
	}
	var readers, writers sync.WaitGroup
	for _, g := range f.groups {
		for i, c := range g.subs {
			readers.Add(1)
			go func() { defer readers.Done(); f.subscriber(g, c, g.hists[i], g.sems[i]) }()
		}
		for _, p := range g.pubs {
			inflight := make(chan struct{}, min(int(p.c.Connack.ReceiveMaximum), 256))
			readers.Add(1)
			go func() { defer readers.Done(); f.ackReader(g, p.c, inflight) }()
			writers.Add(1)
			go func() { defer writers.Done(); f.publish(g, p, inflight) }()
		}
	}
	var sent0, recv0, sent1, recv1 int64
	secs, ok := s.measure(ctx, &f.measuring,
		func() { sent0, recv0 = f.totals() },
		func() { sent1, recv1 = f.totals() })
	close(f.done)
	writers.Wait()
	f.drain(3 * time.Second)
	f.closeAll()
	readers.Wait()

	r := Result{Seconds: secs, Published: sent1 - sent0, Delivered: recv1 - recv0}
	r.Rate = float64(r.Delivered) / secs
	var h Hist
	for _, g := range f.groups {
		for _, gh := range g.hists {
			h.Merge(gh)
		}
		r.Refused += g.refused.Load()
		r.Stalls += g.stalls.Load()
		r.Lost += g.sent.Load()*int64(g.fan) - g.recv.Load() - g.refused.Load()*int64(g.fan)
	}
	r.P50, r.P99, r.P999 = micros(h.Quantile(0.50)), micros(h.Quantile(0.99)), micros(h.Quantile(0.999))
	r.Samples = h.Count()
	f.errs.fill(&r)
	if !ok {
		return r, ctx.Err()
	}
	return r, nil
}

func (f *flow) totals() (sent, recv int64) {
	for _, g := range f.groups {
		sent += g.sent.Load()
		recv += g.recv.Load()
	}
	return sent, recv
}

// drain waits until every group has delivered what it published, or d.
func (f *flow) drain(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		left := false
		for _, g := range f.groups {
			if g.recv.Load()+g.refused.Load()*int64(g.fan) < g.sent.Load()*int64(g.fan) {
				left = true
			}
		}
		if !left {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *flow) closeAll() {
	for _, g := range f.groups {
		for _, c := range g.subs {
			_ = c.Close()
		}
		for _, p := range g.pubs {
			_ = p.c.Close()
		}
	}
}

// connectGroup connects group n's subscribers (and subscribes them), then
// its publishers.
func (f *flow) connectGroup(ctx context.Context, n int) (*group, error) {
	s := f.s
	home := "b" + strconv.Itoa(n)
	g := &group{home: home, fan: max(1, s.Subs)}
	agent := home + "-a"
	for i := 0; i < s.Subs; i++ {
		sub, role, filter := "user:"+home+"-s"+strconv.Itoa(i), "viewer", "homes/"+home+"/agents/+/devices/+/state"
		if s.Scenario == Command {
			sub, role, filter = "agent:"+agent, "agent", "homes/"+home+"/agents/"+agent+"/devices/+/cmd"
		}
		id, err := f.t.Identity(sub, home, role)
		if err != nil {
			return g, err
		}
		c, err := f.dialAt(ctx, cmp.Or(f.t.SubAddr, f.t.Addr), id, "s"+strconv.Itoa(i), 0)
		if err != nil {
			return g, err
		}
		g.subs = append(g.subs, c)
		g.hists = append(g.hists, new(Hist))
		g.sems = append(g.sems, make(chan struct{}, s.Window))
		if err := c.Subscribe(filter, s.QoS, 10*time.Second); err != nil {
			return g, fmt.Errorf("load: %s on %s: %w", sub, f.t.Name, err)
		}
	}
	for i := 0; i < s.Pubs; i++ {
		p := &publisher{}
		var err error
		if s.Scenario == Command {
			p.id, err = f.t.Identity("user:"+home+"-c"+strconv.Itoa(i), home, "admin")
			p.topic = "homes/" + home + "/agents/" + agent + "/devices/d" + strconv.Itoa(i) + "/cmd"
		} else {
			a := home + "-p" + strconv.Itoa(i)
			p.id, err = f.t.Identity("agent:"+a, home, "agent")
			p.topic = "homes/" + home + "/agents/" + a + "/devices/d0/state"
		}
		if err != nil {
			return g, err
		}
		if p.c, err = f.dial(ctx, p.id, "p"+strconv.Itoa(i), 0); err != nil {
			return g, err
		}
		g.pubs = append(g.pubs, p)
	}
	return g, nil
}

func (f *flow) dial(ctx context.Context, id Identity, suffix string, bufSize int) (*mqttc.Conn, error) {
	return f.dialAt(ctx, f.t.Addr, id, suffix, bufSize)
}

func (f *flow) dialAt(ctx context.Context, addr string, id Identity, suffix string, bufSize int) (*mqttc.Conn, error) {
	c, err := mqttc.Dial(ctx, mqttc.Options{Addr: addr, TLS: f.t.TLS, ClientID: id.ClientID(suffix),
		Username: id.Sub, Password: id.Password, Keepalive: 300, BufferSize: bufSize})
	if err != nil {
		return nil, fmt.Errorf("load: connect %s to %s: %w", id.Sub, f.t.Name, err)
	}
	return c, nil
}

// publish sends messages on p until the run is done: one window token per
// message, and for QoS 1 one in-flight token until its PUBACK.
func (f *flow) publish(g *group, p *publisher, inflight chan struct{}) {
	s := f.s
	c := p.c
	defer func() { _ = c.Flush() }()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	payload := make([]byte, s.Size)
	buf := make([]byte, 0, s.Size+256)
	var interval time.Duration
	if s.Rate > 0 {
		interval = time.Duration(float64(time.Second) / s.Rate)
	}
	next := time.Now()
	for {
		for _, sem := range g.sems {
			if !f.acquire(g, c, sem, timer) {
				return
			}
		}
		if s.QoS > 0 && !f.acquire(g, c, inflight, timer) {
			return
		}
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-f.done:
					timer.Stop()
					return
				}
			}
		}
		stamp := int64(time.Since(f.base))
		body := payload
		if s.Scenario == Command {
			var err error
			msg := "t" + strconv.FormatInt(stamp, 10)
			if body, err = envelope.Seal(p.id.Key, p.topic, p.id.JTI, msg, time.Now(), commandTTL); err != nil {
				f.errs.add(err)
				return
			}
		} else {
			binary.BigEndian.PutUint64(payload, uint64(stamp))
		}
		var id uint16
		if s.QoS > 0 {
			id = c.NextID()
		}
		buf = mqttc.AppendPublish(buf[:0], p.topic, id, s.QoS, body)
		if err := c.Write(buf); err != nil {
			f.errs.add(err)
			return
		}
		g.sent.Add(1)
		if interval > 0 {
			if err := c.Flush(); err != nil {
				f.errs.add(err)
				return
			}
		}
	}
}

// acquire takes a token of ch, flushing first if it has to wait. After
// stallTimeout it empties ch (the messages in it are counted as lost at
// the end). It reports false when the run is done.
func (f *flow) acquire(g *group, c *mqttc.Conn, ch chan struct{}, timer *time.Timer) bool {
	select {
	case ch <- struct{}{}:
		return true
	case <-f.done:
		return false
	default:
	}
	if err := c.Flush(); err != nil {
		f.errs.add(err)
		return false
	}
	timer.Reset(stallTimeout)
	defer timer.Stop()
	select {
	case ch <- struct{}{}:
		return true
	case <-f.done:
		return false
	case <-timer.C:
		g.stalls.Add(1)
		for len(ch) > 0 {
			select {
			case <-ch:
			default:
			}
		}
		select {
		case ch <- struct{}{}:
			return true
		case <-f.done:
			return false
		}
	}
}

// ackReader reads what the broker sends a publisher: PUBACKs free an
// in-flight token, and a refusal also frees the message's window token.
func (f *flow) ackReader(g *group, c *mqttc.Conn, inflight chan struct{}) {
	for {
		pk, err := c.ReadPacket()
		if err != nil {
			f.readErr(err)
			return
		}
		switch pk.Type {
		case mqttc.TypePuback:
			_, reason, err := mqttc.ParseAck(pk)
			if err != nil {
				f.errs.add(err)
				return
			}
			select {
			case <-inflight:
			default:
			}
			if reason >= 0x80 {
				if g.refused.Add(1) == 1 {
					f.errs.add(fmt.Errorf("load: %s refused a publish with reason 0x%02X", f.t.Name, reason))
				}
				for _, sem := range g.sems {
					select {
					case <-sem:
					default:
					}
				}
			}
		case mqttc.TypeDisconnect:
			f.errs.add(fmt.Errorf("load: %s disconnected a publisher: % x", f.t.Name, pk.Body))
			return
		}
	}
}

// subscriber reads deliveries, acknowledges QoS 1 ones (sent in batches of
// ackBatch, or when no more input is buffered), records their latency while measuring, and
// gives a token back to its window per delivery.
func (f *flow) subscriber(g *group, c *mqttc.Conn, h *Hist, sem chan struct{}) {
	unacked := 0
	for {
		pk, err := c.ReadPacket()
		if err != nil {
			f.readErr(err)
			return
		}
		switch pk.Type {
		case mqttc.TypePublish:
			p, err := mqttc.ParsePublish(pk)
			if err != nil {
				f.errs.add(err)
				return
			}
			if p.QoS > 0 {
				if err := c.Puback(p.ID); err != nil {
					f.readErr(err)
					return
				}
				unacked++
			}
			if f.measuring.Load() {
				if ts, ok := stampOf(p.Payload); ok {
					h.Record(time.Since(f.base) - time.Duration(ts))
				}
			}
			g.recv.Add(1)
			select {
			case <-sem:
			default:
			}
		case mqttc.TypeDisconnect:
			f.errs.add(fmt.Errorf("load: %s disconnected a subscriber: % x", f.t.Name, pk.Body))
			return
		}
		if unacked >= ackBatch || c.Buffered() == 0 {
			if err := c.Flush(); err != nil {
				f.readErr(err)
				return
			}
			unacked = 0
		}
	}
}

// readErr records a read error unless the run is over (closing the
// connections ends every reader).
func (f *flow) readErr(err error) {
	select {
	case <-f.done:
		return
	default:
	}
	f.errs.add(err)
}

var msgPrefix = []byte(`"msg":"t`)

// stampOf returns the send time carried by a payload: 8 bytes at the start
// of a state message, or the decimal after "t" in a command's msg.
func stampOf(p []byte) (int64, bool) {
	if len(p) == 0 {
		return 0, false
	}
	if p[0] != '{' {
		if len(p) < stampSize {
			return 0, false
		}
		return int64(binary.BigEndian.Uint64(p)), true
	}
	i := bytes.Index(p, msgPrefix)
	if i < 0 {
		return 0, false
	}
	var v int64
	n := 0
	for _, c := range p[i+len(msgPrefix):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
		n++
	}
	return v, n > 0
}
