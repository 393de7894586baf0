package windows

import (
	"context"
	"encoding/json"
	"testing"
)

// TestFiredWindowRecordsItsTrigger: a window a trigger opened says so in its manifest
// (the trigger, not its duration, opened it) with the labels the trigger gave, on disk
// too; a request body cannot set labels.
func TestFiredWindowRecordsItsTrigger(t *testing.T) {
	m, store := newManager(t, nil, newFake("nsys"))
	fired := Local(Fired("slow"))
	w, err := m.CreateWindow(context.Background(), CreateRequest{Duration: "1h", Labels: map[string]string{"trigger": "slow", "trigger_value": "87.5"}}, fired)
	if err != nil {
		t.Fatal(err)
	}
	if w.Trigger != "trigger:slow" || !IsFired(w.Trigger) || w.RequestedBy.Trigger != "trigger:slow" {
		t.Errorf("trigger %q, requested by %+v; want trigger:slow", w.Trigger, w.RequestedBy)
	}
	d := onDisk(t, store, m, w.ID)
	if d.Labels["trigger"] != "slow" || d.Labels["trigger_value"] != "87.5" {
		t.Errorf("labels on disk %v", d.Labels)
	}
	if _, err := m.StopWindow(context.Background(), w.ID, who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, w.ID, StateReady)

	var req CreateRequest
	if err := json.Unmarshal([]byte(`{"labels":{"trigger":"forged"}}`), &req); err != nil || req.Labels != nil {
		t.Errorf("a request body set labels: %v (%v)", req.Labels, err)
	}
}
