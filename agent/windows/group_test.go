package windows

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestGroupIDIsAWindowReference: every method that takes a window takes the group id of
// this agent's window of that group, through one resolver; the group is in the manifest
// and found again by a restarted agent.
func TestGroupIDIsAWindowReference(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	w, err := m.CreateWindow(ctx, CreateRequest{Group: "g-run.1"}, who)
	if err != nil {
		t.Fatal(err)
	}
	if w.Group != "g-run.1" {
		t.Fatalf("the manifest's group is %q", w.Group)
	}
	if got, err := m.Window(ctx, "g-run.1"); err != nil || got.ID != w.ID {
		t.Fatalf("Window(group): %+v, %v", got, err)
	}
	if _, err := m.PinWindow(ctx, "g-run.1", true, who); err != nil {
		t.Fatalf("PinWindow(group): %v", err)
	}
	if _, err := m.StopWindow(ctx, "g-run.1", who); err != nil {
		t.Fatalf("StopWindow(group): %v", err)
	}
	waitState(t, m, w.ID, StateReady)
	if p, a, err := m.ArtifactPath(ctx, "g-run.1", "report.nsys-rep"); err != nil || a.Name != "report.nsys-rep" || !strings.Contains(p, w.ID) {
		t.Fatalf("ArtifactPath(group): %q %+v %v", p, a, err)
	}
	if err := m.SetVerdict("g-run.1", []byte(`{"status":"ok"}`)); err != nil {
		t.Fatalf("SetVerdict(group): %v", err)
	}
	if _, err := m.SetGroup(ctx, "g-run.1", GroupRecord{ID: "g-run.1", State: "capturing"}); err != nil {
		t.Fatalf("SetGroup(group): %v", err)
	}

	// At most one window of a group on an agent, finished or not: the refusal names it.
	if _, err := m.CreateWindow(ctx, CreateRequest{Group: "g-run.1"}, who); !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), w.ID) {
		t.Fatalf("a second window of the group: want ErrInvalid naming %s, got %v", w.ID, err)
	}
	// A group this agent has no window of, where each method would look it up.
	for name, call := range map[string]func() error{
		"Window":       func() error { _, err := m.Window(ctx, "g-other"); return err },
		"StopWindow":   func() error { _, err := m.StopWindow(ctx, "g-other", who); return err },
		"PinWindow":    func() error { _, err := m.PinWindow(ctx, "g-other", true, who); return err },
		"DeleteWindow": func() error { _, err := m.DeleteWindow(ctx, "g-other", who); return err },
		"ArtifactPath": func() error { _, _, err := m.ArtifactPath(ctx, "g-other", "report.nsys-rep"); return err },
		"SetGroup":     func() error { _, err := m.SetGroup(ctx, "g-other", GroupRecord{ID: "g-other"}); return err },
		"SetCost":      func() error { return m.SetCost("g-other", []byte(`{}`)) },
	} {
		if err := call(); !kindIs(err, ErrNotFound) || !strings.Contains(err.Error(), "no window of group g-other") {
			t.Errorf("%s(unknown group): want ErrNotFound naming the group, got %v", name, err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}

	// A restarted agent finds the window by its group, with what was recorded.
	again, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	got, err := again.Window(ctx, "g-run.1")
	if err != nil || got.ID != w.ID || !got.Pinned || got.GroupInfo == nil || got.GroupInfo.ID != "g-run.1" {
		t.Fatalf("after a restart, Window(group) = %+v, %v", got, err)
	}
	if _, err := again.CreateWindow(ctx, CreateRequest{Group: "g-run.1"}, who); !kindIs(err, ErrInvalid) {
		t.Fatalf("after a restart the group still has its window: want ErrInvalid, got %v", err)
	}
	if _, err := again.PinWindow(ctx, "g-run.1", false, who); err != nil {
		t.Fatal(err)
	}
	if _, err := again.DeleteWindow(ctx, "g-run.1", who); err != nil {
		t.Fatalf("DeleteWindow(group): %v", err)
	}
	// Removing the window frees the group id.
	if w2, err := again.CreateWindow(ctx, CreateRequest{Group: "g-run.1"}, who); err != nil || w2.ID == w.ID {
		t.Fatalf("a new window of the group once the old one is removed: %+v, %v", w2, err)
	}
}

// TestSetGroup: the record is stored only on a window of that group, bounded, saved, and
// kept by a restart and by the window's later saves.
func TestSetGroup(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	plain := capture(t, m, "plain")
	w, err := m.CreateWindow(ctx, CreateRequest{Group: "g-a"}, who)
	if err != nil {
		t.Fatal(err)
	}
	fired := time.Now().UTC()
	rec := GroupRecord{ID: "g-a", Coordinator: "client-1", StartAt: fired, State: "capturing", SkewNs: 1200, FireSkewNs: 800,
		Members: []GroupMember{{Agent: "http://gpu-1:7477", Host: "gpu-1_7477", Window: w.ID, OffsetNs: -2_500_000_000, UncertaintyNs: 90_000, RTTNs: 180_000, FiredAt: &fired, StartedAt: &fired, State: "capturing"}}}
	for _, tc := range []struct {
		name, ref string
		rec       GroupRecord
		kind      error
		msg       string
	}{
		{"window of no group", plain, GroupRecord{ID: "g-a"}, ErrInvalid, "belongs to no group"},
		{"another group's record", w.ID, GroupRecord{ID: "g-b"}, ErrInvalid, "member of group g-a, not of group \"g-b\""},
		{"record without id", "g-a", GroupRecord{}, ErrInvalid, "not of group \"\""},
		{"too many members", w.ID, GroupRecord{ID: "g-a", Members: make([]GroupMember, MaxGroupMembers+1)}, ErrInvalid, "at most 2048"},
		{"unknown window", "w20260101-000000-abcdef", rec, ErrNotFound, "no window"},
		{"by window id", w.ID, rec, nil, ""},
		{"by group id", "g-a", rec, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.SetGroup(ctx, tc.ref, tc.rec)
			if tc.kind != nil {
				if !kindIs(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("want %v saying %q, got %v", tc.kind, tc.msg, err)
				}
				return
			}
			if err != nil || got.ID != w.ID || got.GroupInfo == nil || len(got.GroupInfo.Members) != 1 || got.GroupInfo.Members[0].OffsetNs != -2_500_000_000 {
				t.Fatalf("SetGroup: %+v, %v", got, err)
			}
			if d := onDisk(t, store, m, w.ID); d.GroupInfo == nil || d.GroupInfo.Coordinator != "client-1" || d.GroupInfo.SkewNs != 1200 {
				t.Fatalf("not saved: %+v", d.GroupInfo)
			}
		})
	}
	// The caller's slice is the caller's: changing it later does not reach the manifest.
	rec.Members[0].Host = "changed"
	if got, _ := m.Window(ctx, "g-a"); got.GroupInfo.Members[0].Host != "gpu-1_7477" {
		t.Errorf("the stored record shares the caller's members: %+v", got.GroupInfo.Members[0])
	}
	if _, err := m.StopWindow(ctx, "g-a", who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, w.ID, StateReady)
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	again, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	got, err := again.Window(ctx, "g-a")
	if err != nil || got.State != StateReady || got.GroupInfo == nil || got.GroupInfo.Members[0].Window != w.ID || !got.GroupInfo.StartAt.Equal(fired) {
		t.Fatalf("after the window's later saves and a restart: %+v, %v", got, err)
	}
}
