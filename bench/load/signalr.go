package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"homemq/bench/mqttc"
	"homemq/envelope"
)

// SignalR: Pubs callers per run invoke SendCommand on homemq's SignalR
// bridge (WebSockets, JSON hub protocol), each waiting for the completion
// before the next; an MQTT agent answers every command with an ack
// carrying its nonce. The latency is invoke → completion.
const SignalR Scenario = "signalr"

// recordSep ends every JSON hub protocol record.
const recordSep = 0x1E

// hubClient is one SignalR connection to /signalr/home over WebSockets.
type hubClient struct {
	ws   *websocket.Conn
	next int
	buf  []byte // records read but not yet returned
}

func dialHub(ctx context.Context, httpsAddr string, conf *tls.Config, token string) (*hubClient, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
	auth := http.Header{"Authorization": {"Bearer " + token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+httpsAddr+"/signalr/home/negotiate?negotiateVersion=1", nil)
	if err != nil {
		return nil, err
	}
	req.Header = auth.Clone()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("load: negotiate: %w", err)
	}
	var neg struct {
		ConnectionToken string `json:"connectionToken"`
		Error           string `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&neg)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || neg.ConnectionToken == "" {
		return nil, fmt.Errorf("load: negotiate answered %s %s (%v)", resp.Status, neg.Error, err)
	}
	ws, _, err := websocket.Dial(ctx, "wss://"+httpsAddr+"/signalr/home?id="+url.QueryEscape(neg.ConnectionToken),
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: auth})
	if err != nil {
		return nil, fmt.Errorf("load: SignalR WebSocket: %w", err)
	}
	c := &hubClient{ws: ws}
	if err := ws.Write(ctx, websocket.MessageText, append([]byte(`{"protocol":"json","version":1}`), recordSep)); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	rec, err := c.record(ctx)
	if err != nil || string(rec) != "{}" {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("load: SignalR handshake answered %q (%v)", rec, err)
	}
	return c, nil
}

// record returns the next hub protocol record.
func (c *hubClient) record(ctx context.Context) ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf, recordSep); i >= 0 {
			rec := c.buf[:i]
			c.buf = c.buf[i+1:]
			return rec, nil
		}
		_, msg, err := c.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		c.buf = append(c.buf, msg...)
	}
}

// invoke calls a hub method and waits for its completion.
func (c *hubClient) invoke(ctx context.Context, target string, args ...any) (json.RawMessage, error) {
	c.next++
	id := strconv.Itoa(c.next)
	msg, err := json.Marshal(map[string]any{"type": 1, "invocationId": id, "target": target, "arguments": args})
	if err != nil {
		return nil, err
	}
	if err := c.ws.Write(ctx, websocket.MessageText, append(msg, recordSep)); err != nil {
		return nil, err
	}
	for {
		rec, err := c.record(ctx)
		if err != nil {
			return nil, err
		}
		var m struct {
			Type         int             `json:"type"`
			InvocationID string          `json:"invocationId"`
			Result       json.RawMessage `json:"result"`
			Error        string          `json:"error"`
		}
		if err := json.Unmarshal(rec, &m); err != nil {
			return nil, err
		}
		switch {
		case m.Type == 3 && m.InvocationID == id:
			if m.Error != "" {
				return nil, fmt.Errorf("load: %s failed: %s", target, m.Error)
			}
			return m.Result, nil
		case m.Type == 7:
			return nil, fmt.Errorf("load: the bridge closed the connection: %s", m.Error)
		}
	}
}

// ackAgent answers every command it receives with an ack carrying the
// command's nonce, until its connection closes.
func ackAgent(c *mqttc.Conn, errs *errCounter, done <-chan struct{}) {
	var buf []byte
	for {
		pk, err := c.ReadPacket()
		if err != nil {
			select {
			case <-done:
			default:
				errs.add(fmt.Errorf("load: agent: %w", err))
			}
			return
		}
		if pk.Type != mqttc.TypePublish {
			continue
		}
		p, err := mqttc.ParsePublish(pk)
		if err != nil {
			errs.add(err)
			return
		}
		if p.QoS > 0 {
			_ = c.Puback(p.ID)
		}
		env, err := envelope.Parse(p.Payload, envelope.DefaultPolicy())
		if err != nil || !bytes.HasSuffix(p.Topic, []byte("/cmd")) {
			errs.add(fmt.Errorf("load: agent got %q on %s (%v)", p.Payload, p.Topic, err))
			continue
		}
		ackTopic := string(p.Topic[:len(p.Topic)-len("cmd")]) + "ack"
		buf = mqttc.AppendPublish(buf[:0], ackTopic, 0, 0, []byte(`{"nonce":"`+env.Nonce+`","ok":true}`))
		if err := c.Write(buf); err != nil {
			errs.add(err)
			return
		}
		if c.Buffered() == 0 {
			if err := c.Flush(); err != nil {
				errs.add(err)
				return
			}
		}
	}
}

// runSignalR measures SendCommand round trips through the SignalR bridge.
func runSignalR(ctx context.Context, t Target, s Spec) (Result, error) {
	if t.HTTPS == "" || t.Minter == nil {
		return Result{}, fmt.Errorf("load: the SignalR scenario needs homemq's HTTPS address and its data folder")
	}
	home := "b" + strconv.Itoa(s.GroupBase)
	agent := home + "-a"
	aid, err := t.Identity("agent:"+agent, home, "agent")
	if err != nil {
		return Result{}, err
	}
	ac, err := mqttc.Dial(ctx, mqttc.Options{Addr: t.Addr, TLS: t.TLS, ClientID: aid.ClientID("signalr"), Username: aid.Sub, Password: aid.Password, Keepalive: 300})
	if err != nil {
		return Result{}, fmt.Errorf("load: agent: %w", err)
	}
	defer ac.Close()
	if err := ac.Subscribe("homes/"+home+"/agents/"+agent+"/devices/+/cmd", 1, 10*time.Second); err != nil {
		return Result{}, err
	}
	var errs errCounter
	done := make(chan struct{})
	var agentDone sync.WaitGroup
	agentDone.Add(1)
	go func() { defer agentDone.Done(); ackAgent(ac, &errs, done) }()
	defer func() { close(done); _ = ac.Close(); agentDone.Wait() }()

	type caller struct {
		hub  *hubClient
		id   Identity
		hist Hist
	}
	callers := make([]*caller, s.Pubs)
	for i := range callers {
		id, err := t.Identity("user:"+home+"-r"+strconv.Itoa(i), home, "admin")
		if err != nil {
			return Result{}, err
		}
		hub, err := dialHub(ctx, t.HTTPS, t.HTTPSTLS, string(id.Password))
		if err != nil {
			return Result{}, err
		}
		defer hub.ws.CloseNow()
		callers[i] = &caller{hub: hub, id: id}
	}
	var measuring, stop atomic.Bool
	var calls atomic.Int64
	var wg sync.WaitGroup
	for i, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			device := "d" + strconv.Itoa(i)
			topic := "homes/" + home + "/agents/" + agent + "/devices/" + device + "/cmd"
			var interval time.Duration
			if s.Rate > 0 {
				interval = time.Duration(float64(time.Second) / s.Rate)
			}
			next := time.Now()
			for !stop.Load() {
				if interval > 0 {
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
				env, err := envelope.Seal(c.id.Key, topic, c.id.JTI, `{"action":"toggle"}`, time.Now(), commandTTL)
				if err != nil {
					errs.add(err)
					return
				}
				t0 := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err = c.hub.invoke(cctx, "SendCommand", home, agent, device, string(env))
				cancel()
				if err != nil {
					errs.add(err)
					return
				}
				if measuring.Load() {
					c.hist.Record(time.Since(t0))
					calls.Add(1)
				}
			}
		}()
	}
	secs, ok := s.measure(ctx, &measuring, nil, nil)
	stop.Store(true)
	wg.Wait()
	var h Hist
	for _, c := range callers {
		h.Merge(&c.hist)
	}
	r := Result{Seconds: secs, Delivered: calls.Load(), Rate: float64(calls.Load()) / secs, Samples: h.Count(),
		P50: micros(h.Quantile(0.5)), P99: micros(h.Quantile(0.99)), P999: micros(h.Quantile(0.999))}
	errs.fill(&r)
	if !ok {
		return r, ctx.Err()
	}
	return r, nil
}
