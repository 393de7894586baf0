package windows

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"": true, "spike-1.v2_b": true, "a/b": false, "..": false, "a..b": false, "x y": false,
		"é": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, `a\b`: false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
