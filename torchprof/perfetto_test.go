package torchprof

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/golden"
)

// bundleMember is one member of a bundle read back.
type bundleMember struct {
	hdr  *tar.Header
	raw  []byte // the header block as written
	data []byte
}

// readBundle reads a bundle back with archive/tar, keeping each raw header block.
func readBundle(t *testing.T, path string) []bundleMember {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%tarBlock != 0 || !bytes.Equal(b[len(b)-2*tarBlock:], make([]byte, 2*tarBlock)) {
		t.Errorf("%s: %d bytes, not whole blocks ending in two zero blocks", path, len(b))
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var out []bundleMember
	off := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bundleMember{hdr, b[off : off+tarBlock], data})
		off += tarBlock + (len(data)+tarBlock-1)/tarBlock*tarBlock
	}
	return out
}

func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	r, closeFn, err := openTrace(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// minTsNs is the earliest "ts" in a Kineto trace's text, in ns.
func minTsNs(t *testing.T, text []byte) int64 {
	t.Helper()
	first := int64(1<<63 - 1)
	for _, m := range tsField.FindAll(text, -1) {
		ns, ok := tsNanos(m[len(`"ts": `):])
		if !ok {
			t.Fatalf("ts %s", m)
		}
		first = min(first, ns)
	}
	return first
}

// TestPerfettoBundle reads the bundle of the two-host capture back: a TAR Perfetto's
// reader takes (GNU headers, names in the name field), the manifest first, then every
// rank trace uncompressed and byte for byte, each on its host's machine, and host B's
// file pinned to the reference at the offset that puts its first event where the
// original capture has it.
func TestPerfettoBundle(t *testing.T) {
	dir := t.TempDir()
	files := twoHosts(t, dir, true)
	out := filepath.Join(dir, "merged.perfetto.tar")
	var progress []int64
	st, err := WritePerfettoBundle(context.Background(), files, out, BundleOptions{
		Attributes: map[string]string{"nsys_agent.group": "g-test"},
		Progress:   func(done, total int64) { progress = append(progress, done, total) },
	})
	if err != nil {
		t.Fatal(err)
	}
	members := readBundle(t, out)
	var names []string
	for _, m := range members {
		names = append(names, m.hdr.Name)
		if m.hdr.Format != tar.FormatGNU || string(m.raw[257:265]) != "ustar  \x00" || m.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: format %v, magic %q, type %c; Perfetto reads GNU or ustar regular files", m.hdr.Name, m.hdr.Format, m.raw[257:265], m.hdr.Typeflag)
		}
	}
	wantNames := []string{ManifestName, "gpu-1_7477/1763900000.123456-TP-0.trace.json", "gpu-2_7477/1763900000.123456-TP-1.trace.json"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("members %q, want %q", names, wantNames)
	}
	for i, rf := range files {
		want := gunzipFile(t, rf.Path)
		if sha256.Sum256(members[i+1].data) != sha256.Sum256(want) || st.Files[i].Bytes != int64(len(want)) {
			t.Errorf("%s: not %s uncompressed (%d bytes, want %d)", names[i+1], rf.Path, len(members[i+1].data), len(want))
		}
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != st.Bytes {
		t.Errorf("size %v, stats say %d", err, st.Bytes)
	}
	if len(progress) != 4 || progress[2] != progress[3] {
		t.Errorf("progress %v, want one call per file ending at the total", progress)
	}

	var man struct {
		M struct {
			Version int `json:"version"`
			Files   []struct {
				Path    string `json:"path"`
				Machine *struct {
					Name string `json:"name"`
				} `json:"machine"`
				Clocks map[string]json.RawMessage `json:"clocks"`
			} `json:"files"`
			Attributes map[string]any `json:"attributes"`
		} `json:"perfetto_manifest"`
	}
	text := members[0].data
	if !bytes.HasPrefix(bytes.Join(bytes.Fields(text), nil), []byte(`{"perfetto_manifest"`)) {
		t.Errorf("Perfetto detects a manifest by its start, {\"perfetto_manifest\": %.40s", text)
	}
	if err := json.Unmarshal(text, &man); err != nil {
		t.Fatal(err)
	}
	m := man.M
	if m.Version != 1 || len(m.Files) != 2 || m.Attributes["nsys_agent.group"] != "g-test" || m.Attributes["nsys_agent.aligned"] != "true" {
		t.Fatalf("manifest %s", text)
	}
	ref, pinned := m.Files[0], m.Files[1]
	if ref.Path != wantNames[1] || st.Reference != ref.Path || ref.Clocks != nil || ref.Machine == nil || ref.Machine.Name != hostA {
		t.Errorf("reference entry %+v", ref)
	}
	var clocks struct {
		SyncTo   map[string]string `json:"sync_to"`
		OffsetNs int64             `json:"offset_ns"`
	}
	if err := json.Unmarshal(mustJSON(t, pinned.Clocks), &clocks); err != nil {
		t.Fatal(err)
	}
	// A pin: neither this file's clock nor the reference's is named (both are clockless).
	if _, named := pinned.Clocks["clock"]; named || len(clocks.SyncTo) != 1 || clocks.SyncTo["file"] != ref.Path ||
		pinned.Machine == nil || pinned.Machine.Name != hostB || st.Files[1].OffsetNs != clocks.OffsetNs {
		t.Errorf("pinned entry %s: %+v", pinned.Path, clocks)
	}
	// "The source clock reads T when the reference clock reads T + offset_ns": host B's
	// first event, moved by offset_ns, is where the original capture's rank 1 starts on
	// rank 0's clock (the reference file is rank 0 as captured).
	orig := gunzipFile(t, filepath.Join(kinetoFixture, "1763900000.123456-TP-1.trace.json.gz"))
	if got, want := minTsNs(t, members[2].data)+clocks.OffsetNs, minTsNs(t, orig); got != want {
		t.Errorf("host B's first event at %d ns on the reference's clock, want %d", got, want)
	}
	golden.Check(t, "testdata/perfetto-manifest-2host.golden.json", string(text), *update)

	// Offsets unknown: host B stays 7.25 s off, and the manifest says so.
	dir = t.TempDir()
	st, err = WritePerfettoBundle(context.Background(), twoHosts(t, dir, false), out, BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Aligned || st.Files[1].OffsetNs != hostBAheadNs+hostBBootNs || !slices.Equal(st.UnalignedHosts, []string{hostA, hostB}) {
		t.Errorf("unaligned bundle: %+v", st)
	}
	members = readBundle(t, out)
	if err := json.Unmarshal(members[0].data, &man); err != nil {
		t.Fatal(err)
	}
	if man.M.Attributes["nsys_agent.aligned"] != "false" || man.M.Attributes["nsys_agent.unaligned_hosts"] != hostA+","+hostB {
		t.Errorf("unaligned manifest attributes %v", man.M.Attributes)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPerfettoBundleOneHost: the fixture as one machine-less capture: no machine
// entries, rank 1 pinned at 0 (both ranks share a clock), plain JSON inputs too.
func TestPerfettoBundleOneHost(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "p-TP-1.trace.json")
	if err := os.WriteFile(plain, []byte(`{"traceEvents": [{"ph":"X","pid":1,"ts":1.5,"dur":1}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	files := RankFilesFromPaths([]string{filepath.Join(kinetoFixture, "1763900000.123456-TP-0.trace.json.gz"), plain})
	out := filepath.Join(dir, "b.tar")
	st, err := WritePerfettoBundle(context.Background(), files, out, BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	members := readBundle(t, out)
	if len(members) != 3 || members[1].hdr.Name != "1763900000.123456-TP-0.trace.json" || string(members[2].data) != `{"traceEvents": [{"ph":"X","pid":1,"ts":1.5,"dur":1}]}` {
		t.Fatalf("members %v", members)
	}
	text := string(members[0].data)
	if strings.Contains(text, "machine") || strings.Contains(text, "attributes") || !strings.Contains(text, `"offset_ns": 0`) || !st.Aligned {
		t.Errorf("one-host manifest:\n%s", text)
	}
}

func TestMemberNames(t *testing.T) {
	long := strings.Repeat("x", 90) + "-TP-0.trace.json.gz"
	longHost := strings.Repeat("h", 80)
	for _, tc := range []struct {
		name  string
		files []RankFile
		want  []string
		err   string
	}{
		{"host folders", []RankFile{{Path: "/a/p-TP-0.trace.json.gz", Host: "gpu-1_7477"}, {Path: "/b/p-TP-0.trace.json.gz", Host: "gpu-2_7477"}},
			[]string{"gpu-1_7477/p-TP-0.trace.json", "gpu-2_7477/p-TP-0.trace.json"}, ""},
		{"no host", []RankFile{{Path: "/a/p-TP-0.trace.json"}}, []string{"p-TP-0.trace.json"}, ""},
		{"too long for a header", []RankFile{{Path: "/a/" + long, Host: "h"}, {Path: "/a/x-TP-1.trace.json.gz", Host: longHost}},
			[]string{"h/rank000.trace.json", strings.Repeat("h", 64) + "~/x-TP-1.trace.json"}, ""},
		{"hidden and odd characters", []RankFile{{Path: "/a/.p-TP-0.trace.json.gz", Host: ".h st"}}, []string{"_.h_st/_.p-TP-0.trace.json"}, ""},
		{"same name twice", []RankFile{{Path: "/a/p-TP-0.trace.json.gz"}, {Path: "/b/p-TP-0.trace.json"}}, nil, "would both be p-TP-0.trace.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := memberNames(tc.files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("names %q, %v; want %q", got, err, tc.want)
			}
			for _, n := range got {
				if len(n) > tarNameMax {
					t.Errorf("%s: %d bytes, more than a header's name field", n, len(n))
				}
			}
		})
	}
}

// TestTarHeaderLargeMember: a member beyond the 8 GiB of an octal size field (an
// uncompressed rank trace can be) still takes one header block, its size in GNU
// base-256, which Perfetto's TAR reader decodes.
func TestTarHeaderLargeMember(t *testing.T) {
	const size = 9 << 30
	h, err := tarHeader("gpu-1_7477/p-TP-0.trace.json", size, time.Unix(1763900000, 5e8))
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != tarBlock || h[124]&0x80 == 0 {
		t.Fatalf("header of %d bytes, size field %x", len(h), h[124:136])
	}
	var n int64
	for _, c := range h[125:136] {
		n = n<<8 | int64(c)
	}
	if n != size {
		t.Errorf("size field says %d, want %d", n, size)
	}
	hdr, err := tar.NewReader(io.MultiReader(bytes.NewReader(h), &zeroReader{size + 1024})).Next()
	if err != nil || hdr.Size != size || hdr.ModTime.Unix() != 1763900000 {
		t.Errorf("read back: %v, %+v", err, hdr)
	}
}

type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// TestPerfettoBundleFails: a missing input or a cancelled context fails with the cause
// and leaves no archive (nor a temporary file) behind.
func TestPerfettoBundleFails(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	good := filepath.Join(kinetoFixture, "1763900000.123456-TP-0.trace.json.gz")
	truncated := filepath.Join(dir, "t-TP-1.trace.json.gz")
	raw, err := os.ReadFile(filepath.Join(kinetoFixture, "1763900000.123456-TP-1.trace.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		files []string
		want  string
	}{
		{"missing", context.Background(), []string{good, filepath.Join(dir, "none-TP-1.trace.json.gz")}, "no such file"},
		{"truncated gzip", context.Background(), []string{good, truncated}, truncated},
		{"cancelled", cancelled, []string{good}, context.Canceled.Error()},
		{"nothing", context.Background(), nil, "no input files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WritePerfettoBundle(tc.ctx, RankFilesFromPaths(tc.files), out, BundleOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if tc.name == "cancelled" && !errors.Is(err, context.Canceled) {
				t.Errorf("error %v is not context.Canceled", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}
