package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"homemq/cluster"
)

// NodeProc is one homemq node running in a process of its own (the
// `homemq-bench scale-node` subcommand), so that its resident memory is
// its own and a `kill -9` kills that node only.
type NodeProc struct {
	// Name is the node's name (a, b, c; "single" for a node alone).
	Name string
	// Addr is the node's plain MQTT address.
	Addr string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	mu   sync.Mutex
}

// PID is the node's process id.
func (p *NodeProc) PID() int { return p.cmd.Process.Pid }

// Heap asks the node to collect garbage and returns its live heap and
// goroutine stacks in bytes.
func (p *NodeProc) Heap() (heap, stacks int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.in, "heap\n"); err != nil {
		return 0, 0, fmt.Errorf("bench: ask node %s for its heap: %w", p.Name, err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("bench: read node %s's heap: %w", p.Name, err)
	}
	if _, err := fmt.Sscanf(line, "heap %d %d", &heap, &stacks); err != nil {
		return 0, 0, fmt.Errorf("bench: node %s answered %q to heap: %w", p.Name, line, err)
	}
	return heap, stacks, nil
}

// Kill kills the node with SIGKILL and waits for it.
func (p *NodeProc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// Stop closes the node's input (it closes its broker and exits) and
// waits for it; after 10 s it kills it.
func (p *NodeProc) Stop() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// StartNodeProcs starts n homemq nodes as processes of exe (the
// homemq-bench binary, subcommand scale-node), their data under dir: one
// single node when n is 1, else a cluster with embedded NATS routed on
// loopback, as StartCluster makes in one process.
func StartNodeProcs(ctx context.Context, exe, dir string, n int) ([]*NodeProc, error) {
	dirs, routes, secret, err := prepareNodes(dir, n)
	if err != nil {
		return nil, err
	}
	procs := make([]*NodeProc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		args := []string{"scale-node", "-data", dirs[i]}
		name := "single"
		if n > 1 {
			name = string(rune('a' + i))
			var peers []string
			for j, r := range routes {
				if j != i {
					peers = append(peers, "nats-route://"+r)
				}
			}
			args = append(args, "-name", name, "-route", routes[i], "-peers", strings.Join(peers, ","), "-secret", secret)
		}
		wg.Go(func() { procs[i], errs[i] = startProc(ctx, exe, name, args) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, p := range procs {
			if p != nil {
				p.Kill()
			}
		}
		return nil, err
	}
	return procs, nil
}

func startProc(ctx context.Context, exe, name string, args []string) (*NodeProc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start node %s: %w", name, err)
	}
	p := &NodeProc{Name: name, cmd: cmd, in: in, out: bufio.NewReader(out)}
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() { l, err := p.out.ReadString('\n'); ch <- answer{l, err} }()
	select {
	case a := <-ch:
		addr, ok := strings.CutPrefix(strings.TrimSpace(a.line), "mqtt ")
		if a.err != nil || !ok {
			p.Kill()
			return nil, fmt.Errorf("bench: node %s did not start (it said %q): %v", name, a.line, a.err)
		}
		p.Addr = addr
		return p, nil
	case <-time.After(60 * time.Second):
		p.Kill()
		return nil, fmt.Errorf("bench: node %s did not start within 60 s", name)
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// ServeNode is the node side of NodeProc: it starts a homemq node on dir
// (a cluster node when name is set, with embedded NATS listening for
// routes on route and dialling peers), writes "mqtt ADDR" on out, then
// answers every "heap" line of in with "heap LIVE STACKS" (after a GC)
// until in ends, and closes the node.
func ServeNode(dir, name, route string, peers []string, secret string, in io.Reader, out io.Writer) error {
	var c *cluster.Config
	if name != "" {
		c = &cluster.Config{SecretFile: secret, Embedded: &cluster.Embedded{Name: name, ClusterListen: route, Routes: peers}}
	}
	b, err := startNode(dir, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := fmt.Fprintf(out, "mqtt %s\n", b.Addrs()["mqtt"]); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "heap" {
			continue
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if _, err := fmt.Fprintf(out, "heap %d %d\n", m.HeapAlloc, m.StackInuse); err != nil {
			return err
		}
	}
	return nil
}
