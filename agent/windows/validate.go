package windows

import (
	"fmt"
	"strings"
	"time"
)

// MaxWindowDuration bounds a window's auto-stop duration.
const MaxWindowDuration = 24 * time.Hour

// MaxStartDelay bounds how far ahead start_at may be.
const MaxStartDelay = 24 * time.Hour

// MaxNameLen bounds a window name.
const MaxNameLen = 64

// Validate checks a request field by field (ErrInvalid naming the JSON field); what only
// the Manager knows (which backends exist) it checks itself.
func (r CreateRequest) Validate() error {
	bad := func(format string, a ...any) error { return errorf(ErrInvalid, format, a...) }
	if r.Duration != "" {
		d, err := time.ParseDuration(r.Duration)
		switch {
		case err != nil:
			return bad("duration: invalid duration %q (examples: 5s, 1m30s)", r.Duration)
		case d <= 0:
			return bad("duration: must be positive, got %q", r.Duration)
		case d > MaxWindowDuration:
			return bad("duration: at most %s, got %q", MaxWindowDuration, r.Duration)
		}
	}
	if r.Steps < 0 {
		return bad("steps: must be 0 or more, got %d", r.Steps)
	}
	if err := ValidateName(r.Name); err != nil {
		return bad("name: %v", err)
	}
	if r.StartAt != "" {
		at, err := time.Parse(time.RFC3339, r.StartAt)
		if err != nil {
			return bad("start_at: not an RFC 3339 time (like 2025-01-02T15:04:05Z): %q", r.StartAt)
		}
		// A scheduled window holds the target's one capture place until its time: bound
		// how long it can keep every other window out.
		if until := time.Until(at); until > MaxStartDelay {
			return bad("start_at: at most %s ahead, got %s (%s from now)", MaxStartDelay, r.StartAt, until.Round(time.Minute))
		}
	}
	return nil
}

// parsed returns the duration and start time of a validated request.
func (r CreateRequest) parsed() (dur time.Duration, startAt time.Time) {
	if r.Duration != "" {
		dur, _ = time.ParseDuration(r.Duration)
	}
	if r.StartAt != "" {
		startAt, _ = time.Parse(time.RFC3339, r.StartAt)
	}
	return dur, startAt
}

// ValidateName accepts "" or up to 64 of [A-Za-z0-9._-] without "..": a name may become
// part of a path, and must never leave the window's folder.
func ValidateName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("at most %d characters, got %d", MaxNameLen, len(name))
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("must not contain \"..\": %q", name)
	}
	if strings.HasPrefix(name, ".") {
		// The report would be a hidden file, which no listing shows.
		return fmt.Errorf("must not start with '.': %q", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("only letters, digits, '.', '_' and '-' are allowed, got %q in %q", c, name)
		}
	}
	return nil
}
