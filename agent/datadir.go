package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// The data dir holds, beside windows/ (agent/windows.Store): target.json, target.log and
// agent.lock.

// TargetRecord is <data-dir>/target.json: what a restarted agent needs to find and adopt
// the target its predecessor launched (the session by name, the nsys front-end by pid).
type TargetRecord struct {
	Session   string    `json:"session"`
	Mode      string    `json:"mode"`
	First     string    `json:"first_output"`
	Command   []string  `json:"command"`
	Nsys      string    `json:"nsys"`
	PID       int       `json:"nsys_pid"`
	Group     int       `json:"server_pgid,omitempty"` // the server's own process group
	ServerURL string    `json:"server_url,omitempty"`
	Trace     []string  `json:"trace,omitempty"` // what the session's nsys traces
	StartedAt time.Time `json:"started_at"`
}

func targetPath(dataDir string) string { return filepath.Join(dataDir, "target.json") }

// targetLogPath is the target's output: the nsys front-end writes it itself.
func targetLogPath(dataDir string) string { return filepath.Join(dataDir, "target.log") }

// SaveTarget records the running target.
func SaveTarget(dataDir string, r *TargetRecord) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(targetPath(dataDir), append(data, '\n'), 0o600)
}

// LoadTarget returns the recorded target, or nil when none is recorded.
func LoadTarget(dataDir string) (*TargetRecord, error) {
	raw, err := os.ReadFile(targetPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r TargetRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", targetPath(dataDir), err)
	}
	return &r, nil
}

// ClearTarget forgets the target once it has ended.
func ClearTarget(dataDir string) { _ = os.Remove(targetPath(dataDir)) }

// LockDataDir takes <data-dir>/agent.lock for this agent's life: two agents on one data
// dir would both think they own its target and windows. The error names the holder.
func LockDataDir(dataDir string) (unlock func(), err error) {
	path := filepath.Join(dataDir, "agent.lock")
	fl := flock.New(path, flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		holder, _ := os.ReadFile(path + ".pid")
		return nil, fmt.Errorf("another nsys-agent (pid %s) is using the data dir %s; stop it, or give this one its own --data-dir", strings.TrimSpace(string(holder)), dataDir)
	}
	// The holder's pid goes in a file beside the lock: writing into the locked file itself
	// would need a second open of it.
	_ = atomicfile.Write(path+".pid", []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600)
	return func() { _ = os.Remove(path + ".pid"); _ = fl.Unlock() }, nil
}
