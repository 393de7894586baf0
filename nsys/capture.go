package nsys

// What a capture has written so far, for a window's byte budget (--max-window-bytes).

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// ErrNotMeasurable: the session's capture stream could not be found, so its size is not
// known (the session's agent is gone, or this nsys writes its stream elsewhere).
var ErrNotMeasurable = errors.New("the capture's size cannot be measured")

// CaptureBytes is how many bytes the session's open capture has streamed so far. On
// 2022.4.2 (measured, launch mode) `nsys start` makes the session's agent
// (`nsys --start-agent --session-name=NAME`) stream the capture into
// $TMPDIR/nsys-report-XXXX.qdstrm, held open until the stop moves it to the window's -o:
// nothing grows in the window folder meanwhile. The stream grew ~2 kB/s for the demo
// target with osrt tracing; the file is found through the agent's open files, never by
// name, since other sessions' stops write the same names in the same place.
func CaptureBytes(session string) (int64, error) { return captureBytes(procs.Default, session) }

func captureBytes(r *procs.Reader, session string) (int64, error) {
	pids := sessionAgentPIDs(r, session)
	if len(pids) == 0 {
		return 0, fmt.Errorf("%w: no nsys agent process of session %s", ErrNotMeasurable, session)
	}
	var total int64
	found := false
	for _, pid := range pids {
		files, err := r.OpenFiles(pid)
		if err != nil {
			continue // ended since the listing
		}
		for _, f := range files {
			if !strings.HasSuffix(f, ".qdstrm") {
				continue
			}
			st, err := os.Stat(f)
			if err != nil {
				continue
			}
			total += st.Size()
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: the nsys agent of session %s (pid %v) has no .qdstrm open", ErrNotMeasurable, session, pids)
	}
	return total, nil
}
