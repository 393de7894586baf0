package torchprof

import (
	"testing"

	"go.uber.org/goleak"
)

// Merge and Analyze start goroutines per rank and per compressed block: none may outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
