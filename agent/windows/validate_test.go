package windows

import (
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"": true, "spike-1.v2_b": true, "a/b": false, "..": false, "a..b": false, "x y": false,
		"é": false, ".": false, ".x": false, "x.": true, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, `a\b`: false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestStartAtBounded(t *testing.T) {
	for at, ok := range map[string]bool{
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339):      true,
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339):     true, // past: starts now
		time.Now().Add(25 * time.Hour).UTC().Format(time.RFC3339): false,
	} {
		err := CreateRequest{StartAt: at}.Validate()
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "at most 24h0m0s ahead")) {
			t.Errorf("%s: %v", at, err)
		}
	}
}
