package agent

import (
	"slices"
	"strings"
	"testing"
)

// TestExportEnv: the checks' exports run without the agent's token and in their own
// TMPDIR, set once.
func TestExportEnv(t *testing.T) {
	t.Setenv("NSYS_AGENT_TOKEN", "s3cret")
	t.Setenv("TMPDIR", "/tmp/session")
	env := exportEnv("/data/.verdict/w1")
	if slices.ContainsFunc(env, func(kv string) bool { return strings.Contains(kv, "s3cret") }) {
		t.Error("an export would see the agent's token")
	}
	var tmp []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "TMPDIR=") {
			tmp = append(tmp, kv)
		}
	}
	if !slices.Equal(tmp, []string{"TMPDIR=/data/.verdict/w1"}) {
		t.Errorf("TMPDIR entries %v", tmp)
	}
}
