package shared

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestWrapKeepsMessageAndBothChains(t *testing.T) {
	cause := fmt.Errorf("nsys start: %w", io.ErrUnexpectedEOF)
	err := Wrap(ErrBusy, cause)
	if err.Error() != cause.Error() {
		t.Errorf("message %q, want the cause's %q", err, cause)
	}
	if !errors.Is(err, ErrBusy) || !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrTargetGone) {
		t.Errorf("errors.Is chain wrong for %v", err)
	}
	if Wrap(ErrBusy, nil) != nil {
		t.Error("Wrap(nil) must be nil")
	}
	outer := fmt.Errorf("window w1: %w", err)
	if !errors.Is(outer, ErrBusy) {
		t.Error("kind lost through another wrap")
	}
}

func TestInfoHasAndResultMerge(t *testing.T) {
	i := Info{Capabilities: []Capability{CapExport}}
	if !i.Has(CapExport) || i.Has(CapSteps) {
		t.Errorf("Has: %+v", i)
	}
	r := Result{Warnings: []string{"a"}, Summary: []byte(`{"x":1}`)}.Merge(Result{Warnings: []string{"b"}, Artifacts: []string{"f"}})
	if len(r.Warnings) != 2 || string(r.Summary) != `{"x":1}` || len(r.Artifacts) != 1 {
		t.Errorf("merge: %+v", r)
	}
	if r = r.Merge(Result{Summary: []byte(`{"y":2}`)}); string(r.Summary) != `{"y":2}` {
		t.Errorf("a later summary wins: %s", r.Summary)
	}
}
