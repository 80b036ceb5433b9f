package agent

import (
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

// URLList is a setting that takes one URL or several: in YAML a single
// string (several may be separated by commas) or a list of strings. The
// nodes of a cluster are listed so the agent can reach another when one is
// down (docs/agent.md).
type URLList []string

// UnmarshalYAML accepts a string or a list of strings.
func (l *URLList) UnmarshalYAML(n *yaml.Node) error {
	var out URLList
	switch n.Kind {
	case yaml.ScalarNode:
		out = splitURLs(n.Value)
	case yaml.SequenceNode:
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a URL list holds strings, one URL each", e.Line)
			}
			out = append(out, strings.TrimSpace(e.Value))
		}
	default:
		return fmt.Errorf("line %d: give one URL or a list of URLs", n.Line)
	}
	*l = out
	return nil
}

// splitURLs splits "a, b,c" into its URLs; "" is no URL.
func splitURLs(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// listKey names the i-th entry of the setting key: key itself when the
// list has one entry, key[i] when it has several.
func listKey(key string, i, n int) string {
	if n == 1 {
		return key
	}
	return fmt.Sprintf("%s[%d]", key, i)
}

// rotate returns urls starting at index i (wrapping), without changing urls.
func rotate(urls []string, i int) []string {
	if len(urls) == 0 {
		return nil
	}
	i %= len(urls)
	return append(append([]string{}, urls[i:]...), urls[:i]...)
}

// brokerIndex returns the index of u in brokers, as paho parsed it (0 when
// it is not there).
func brokerIndex(brokers []string, u *url.URL) int {
	for i, b := range brokers {
		if p, err := url.Parse(b); err == nil && p.String() == u.String() {
			return i
		}
	}
	return 0
}
