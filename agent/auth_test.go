package agent

import (
	"strings"
	"testing"
)

func TestTokenSetComparesEveryToken(t *testing.T) {
	ts := newTokenSet([]string{"", "short", "a-much-longer-token-value"})
	for tok, want := range map[string]bool{
		"short": true, "a-much-longer-token-value": true, "": false, "shor": false,
		"shortx": false, "a-much-longer-token-valuE": false,
	} {
		if got := ts.match(tok); got != want {
			t.Errorf("match(%q) = %v, want %v", tok, got, want)
		}
	}
	if len(ts.digests) != 2 {
		t.Errorf("empty token must not be accepted as a token; digests = %d", len(ts.digests))
	}
	if got := TokenID("secret"); len(got) != 8 || strings.Contains(got, "secret") {
		t.Errorf("TokenID = %q, want 8 hex digits", got)
	}
}
