package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // a part of stdout, or "" for none expected
		stderr string // a part of stderr
	}{
		{args: nil, code: 2, stderr: "usage: homemq-agent"},
		{args: []string{"-h"}, code: 0, stdout: "usage: homemq-agent"},
		{args: []string{"--help"}, code: 0, stdout: "usage: homemq-agent"},
		{args: []string{"help"}, code: 0, stdout: "usage: homemq-agent"},
		{args: []string{"run", "-h"}, code: 0, stderr: "usage: homemq-agent run --config agent.yaml"},
		{args: []string{"run", "--help"}, code: 0, stderr: "-sim-input"},
		{args: []string{"run"}, code: 1, stderr: "homemq-agent run: --config agent.yaml is required"},
		{args: []string{"run", "extra"}, code: 1, stderr: "run the agent with: homemq-agent run --config agent.yaml"},
		{args: []string{"run", "--config", "/nonexistent/agent.yaml"}, code: 1, stderr: "homemq-agent run:"},
		{args: []string{"version"}, code: 0, stdout: "homemq-agent devel (commit "},
		{args: []string{"version", "x"}, code: 1, stderr: "version takes no arguments"},
		{args: []string{"add"}, code: 2, stderr: "homemq agent add"},
		{args: []string{"serve"}, code: 2, stderr: `unknown command "serve"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q in it)\nstderr %q (want %q in it)", code, tt.code, out.String(), tt.stdout, errOut.String(), tt.stderr)
			}
		})
	}
}
