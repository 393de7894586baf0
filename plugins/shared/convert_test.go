package shared

import (
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// FuzzFromWire feeds what a plugin (or a host) could put on the wire through the
// decoding and the fromproto conversions: nothing may panic, and a decoded value must
// survive toproto → encode → decode → fromproto unchanged, so no field is lost or bent
// on the way through. Seeds: testdata/fuzz/FuzzFromWire and the full messages below.
func FuzzFromWire(f *testing.F) {
	for _, m := range []proto.Message{
		windowToProto(Window{ID: "w1", Dir: "/d/w1", Name: "n", Duration: time.Second, Steps: 3, Export: true, Options: map[string]string{"k": "v"}}),
		resultToProto(Result{Artifacts: []string{"a"}, Warnings: []string{"w"}, Summary: []byte(`{"x":1}`)}),
		&backendv1.Update{Update: &backendv1.Update_Progress{Progress: progressToProto(ProgressEvent{Step: "s", Fraction: 0.5})}},
		&backendv1.Failure{Kind: "busy", Partial: resultToProto(Result{Artifacts: []string{"p"}})},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, &backendv1.Window{}, windowFromProto, windowToProto)
		roundTrip(t, data, &backendv1.Result{}, resultFromProto, resultToProto)
		roundTrip(t, data, &backendv1.Info{}, infoFromProto, infoToProto)
		roundTrip(t, data, &backendv1.Target{}, targetFromProto, targetToProto)
		roundTrip(t, data, &backendv1.Launch{}, launchFromProto, launchToProto)
		roundTrip(t, data, &backendv1.ProgressEvent{}, progressFromProto, progressToProto)
		var u backendv1.Update
		if proto.Unmarshal(data, &u) == nil {
			_ = progressFromProto(u.GetProgress())
			_ = resultFromProto(u.GetResult())
		}
	})
}

func roundTrip[P proto.Message, G any](t *testing.T, data []byte, msg P, from func(P) G, to func(G) P) {
	t.Helper()
	if proto.Unmarshal(data, msg) != nil {
		return
	}
	first := from(msg)
	b, err := proto.Marshal(to(first))
	if err != nil {
		t.Fatalf("%T: re-encoding %+v: %v", msg, first, err)
	}
	again := msg.ProtoReflect().New().Interface().(P)
	if err := proto.Unmarshal(b, again); err != nil {
		t.Fatalf("%T: decoding what we encoded: %v", msg, err)
	}
	if second := from(again); !reflect.DeepEqual(first, second) {
		t.Fatalf("%T changed through the wire:\n%+v\n%+v", msg, first, second)
	}
}

func TestConvertKeepsZeroValuesZero(t *testing.T) {
	if w := windowFromProto(windowToProto(Window{})); !reflect.DeepEqual(w, Window{}) {
		t.Errorf("zero window came back as %+v", w)
	}
	if r := resultFromProto(nil); !reflect.DeepEqual(r, Result{}) {
		t.Errorf("a missing result reads as %+v", r)
	}
	if i := infoFromProto(infoToProto(Info{})); !reflect.DeepEqual(i, Info{}) {
		t.Errorf("zero info came back as %+v", i)
	}
}

func TestProgressFractionStaysInRange(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.25, 0.25}, {-1, 0}, {2, 1}, {math.NaN(), 0}, {math.Inf(1), 1}, {math.Inf(-1), 0},
	} {
		if got := progressFromProto(&backendv1.ProgressEvent{Fraction: c.in}).Fraction; got != c.want {
			t.Errorf("fraction %v reads as %v, want %v", c.in, got, c.want)
		}
	}
}
