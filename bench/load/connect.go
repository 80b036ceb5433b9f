package load

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"homemq/bench/mqttc"
)

// smallBuffers are the read and write buffers of connections that only
// connect and disconnect, or sit idle.
const smallBuffers = 512

// identities returns n identities (viewers of home b{base}) to spread
// connections over.
func identities(t Target, base, n int) ([]Identity, error) {
	home := "b" + strconv.Itoa(base)
	ids := make([]Identity, n)
	for i := range ids {
		var err error
		if ids[i], err = t.Identity("user:"+home+"-c"+strconv.Itoa(i), home, "viewer"); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// runConnect has Workers clients connect (JWT as password), wait for
// CONNACK, send DISCONNECT and wait for the broker to close, in a loop;
// it counts the cycles completed within the measured window. Every
// connect presents a token of its own (minted before the run, Tokens of
// them, used in turn), so a broker that verifies tokens verifies each one.
func runConnect(ctx context.Context, t Target, s Spec) (Result, error) {
	ids, err := tokenPool(t, s)
	if err != nil {
		return Result{}, err
	}
	var next atomic.Int64
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		connects  atomic.Int64
		errs      errCounter
		wg        sync.WaitGroup
	)
	for w := 0; w < s.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				n := next.Add(1)
				id := ids[int(n)%len(ids)]
				c, err := mqttc.Dial(ctx, mqttc.Options{Addr: t.Addr, TLS: t.TLS, ClientID: id.ClientID("c" + strconv.FormatInt(n, 10)),
					Username: id.Sub, Password: id.Password, Keepalive: 60, Timeout: 5 * time.Second, BufferSize: smallBuffers})
				if err != nil {
					errs.add(err)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err := c.Disconnect(2 * time.Second); err != nil {
					errs.add(err)
					continue
				}
				if measuring.Load() {
					connects.Add(1)
				}
			}
		}()
	}
	secs, ok := s.measure(ctx, &measuring, nil, nil)
	stop.Store(true)
	wg.Wait()
	r := Result{Seconds: secs, Connects: connects.Load(), TokensReused: max(0, next.Load()-int64(len(ids)))}
	r.Rate = float64(r.Connects) / secs
	errs.fill(&r)
	if !ok {
		return r, ctx.Err()
	}
	return r, nil
}

// tokenPool mints s.Tokens identities with tokens of their own (over
// Workers subs of home b{GroupBase}), on every core.
func tokenPool(t Target, s Spec) ([]Identity, error) {
	if t.Minter == nil {
		return identities(t, s.GroupBase, s.Workers)
	}
	home := "b" + strconv.Itoa(s.GroupBase)
	ids := make([]Identity, s.Tokens)
	var errs errCounter
	var wg sync.WaitGroup
	parts := runtime.GOMAXPROCS(0)
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < len(ids); i += parts {
				id, err := t.Minter.Fresh("user:"+home+"-c"+strconv.Itoa(i%s.Workers), home, "viewer")
				if err != nil {
					errs.add(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if errs.n > 0 {
		return nil, errors.New(errs.first)
	}
	return ids, nil
}
