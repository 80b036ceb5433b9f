package compare

import (
	"strings"
	"testing"
	"time"

	"homemq/bench/load"
)

func TestClusterCasesMatchTheSingleNodeOnes(t *testing.T) {
	cases := ClusterCases(time.Second, 0)
	if len(cases) != 2 {
		t.Fatalf("ClusterCases = %d cases, want the QoS 1 state throughput and latency cases", len(cases))
	}
	for _, c := range cases {
		if c.Spec.QoS != 1 || c.Spec.Size != 64 || c.Spec.Pubs != 4 || c.Spec.Subs != 4 {
			t.Errorf("%s: spec %+v, want the single node's 4 → 4, QoS 1, 64 B", c.Name, c.Spec)
		}
	}
}

func TestClusterMarkdown(t *testing.T) {
	c := &Cluster{Nodes: 3, Rounds: 2, Cases: ClusterCases(time.Second, 0)}
	tput, lat := c.Cases[0], c.Cases[1]
	for round, v := range []struct{ single, cluster float64 }{{100, 50}, {200, 60}} {
		c.Add(tput, SingleNode, load.Result{Round: round + 1, Rate: v.single})
		c.Add(tput, ClusterNode, load.Result{Round: round + 1, Rate: v.cluster})
		c.Add(lat, SingleNode, load.Result{Round: round + 1, P50: 100, P99: 200, P999: 300})
		c.Add(lat, ClusterNode, load.Result{Round: round + 1, P50: 400, P99: 1000, P999: 900})
	}
	c.Errors = []string{"boom"}
	md := c.Markdown()
	for _, want := range []string{
		"| state, QoS 1, 64 B, 4 → 4 | msgs/s | 0.40× (0.30–0.50) | 55 | 150 |",
		"| p99 µs | 5.00× | 1.0 ms | 200 µs |",
		"publishers on node a and subscribers on node c",
		"cluster run failed: boom",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "p99.9") {
		t.Errorf("the table shows p99.9 of a short window:\n%s", md)
	}
}
