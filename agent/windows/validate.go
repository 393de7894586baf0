package windows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// MaxWindowDuration bounds a window's auto-stop duration.
const MaxWindowDuration = 24 * time.Hour

// MaxStartDelay bounds how far ahead start_at may be.
const MaxStartDelay = 24 * time.Hour

// MaxNameLen bounds a window name.
const MaxNameLen = 64

// Validate checks a request field by field (ErrInvalid naming the JSON field); what only
// the Manager knows (which backends exist) it checks itself. start_at is checked against
// this process's clock (hostclock.Now); the Manager checks it again on its own clock.
func (r CreateRequest) Validate() error { return r.validate(hostclock.Now()) }

// validate is Validate with start_at read against now.
func (r CreateRequest) validate(now time.Time) error {
	bad := func(format string, a ...any) error { return errorf(ErrInvalid, format, a...) }
	if r.Group != "" && !ValidGroupID(r.Group) {
		return bad("group: want g- and then letters, digits, '.', '_', '-' (at most 64 in all), got %q", r.Group)
	}
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
	if r.MaxBytes < 0 {
		return bad("max_bytes: must be 0 (the agent's --max-window-bytes) or more, got %d", r.MaxBytes)
	}
	if err := ValidateName(r.Name); err != nil {
		return bad("name: %v", err)
	}
	if err := validateOptions(r.Options); err != nil {
		return bad("options: %v", err)
	}
	if r.StartAt != "" {
		at, err := time.Parse(time.RFC3339, r.StartAt)
		if err != nil {
			return bad("start_at: not an RFC 3339 time (like 2025-01-02T15:04:05Z): %q", r.StartAt)
		}
		// A scheduled window holds the target's one capture place until its time: bound
		// how long it can keep every other window out.
		if until := at.Sub(now); until > MaxStartDelay {
			return bad("start_at: at most %s ahead, got %s (%s from now)", MaxStartDelay, r.StartAt, until.Round(time.Minute))
		}
	}
	return nil
}

// Bounds on window options: they reach a plugin process and the manifest, so neither
// may be made to carry much.
const (
	MaxOptions        = 16
	MaxOptionValueLen = 256
)

// validateOptions accepts at most MaxOptions names of [a-z0-9_-] (1-32 characters) with
// values of at most MaxOptionValueLen printable characters.
func validateOptions(opts map[string]string) error {
	if len(opts) > MaxOptions {
		return fmt.Errorf("at most %d, got %d", MaxOptions, len(opts))
	}
	for k, v := range opts {
		if !validOptionName(k) {
			return fmt.Errorf("name %q: use 1 to 32 of a-z, 0-9, '_' and '-'", k)
		}
		if len(v) > MaxOptionValueLen {
			return fmt.Errorf("%s: value at most %d characters, got %d", k, MaxOptionValueLen, len(v))
		}
		if strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("%s: value has a control character", k)
		}
	}
	return nil
}

func validOptionName(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// checkOptions refuses option names the backend does not accept, listing those it does.
func checkOptions(info shared.Info, opts map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if !slices.ContainsFunc(info.Options, func(o shared.Option) bool { return o.Name == k }) {
			if len(info.Options) == 0 {
				return errorf(ErrInvalid, "options: the %s backend takes no options, got %q", info.Name, k)
			}
			var names []string
			for _, o := range info.Options {
				names = append(names, o.Name)
			}
			return errorf(ErrInvalid, "options: the %s backend has no option %q; it takes %s", info.Name, k, strings.Join(names, ", "))
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
