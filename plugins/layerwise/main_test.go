package layerwise

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// database/sql starts a goroutine per open database: every analysis must close its own.
func TestMain(m *testing.M) {
	code := m.Run()
	removeFixtures()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
