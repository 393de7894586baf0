package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/urfave/cli/v2"
)

func pullCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "pull",
		Usage:     "download a window's artifacts into DIR/<window-id>/, verified by sha256",
		ArgsUsage: "WINDOW",
		Description: `Downloads a ready window's files into DIR/<window-id>/ with its manifest.json, checks
each against the sha256 the agent lists, and resumes a download that was cut off. Files
already there and verified are skipped; a different file of the same name is kept
unless --force. Files are private (0600): reports embed the server's environment.
A failed window is an error unless --allow-failed, which pulls its partial files.
With several agents each one's windows go into DIR/<host_port>/.

A group id (g-...) pulls the group window from every agent given into one folder per
host, DIR/<host_port>/ (its files and manifest.json, no window folder), and writes the
group's record (start time, each member's clock offset, the skew) as DIR/group.json,
what a merge needs to put the hosts on one clock. The same checks apply:
sha256, resume, --force for files that differ (group.json included). An agent that
fails is named (exit 1); the others' files stay.

   nsys-agent pull latest --dir ./reports
   nsys-agent pull warmup --rank 0 -o json
   nsys-agent pull latest --allow-failed --agent gpu1:7477,gpu2:7477
   nsys-agent pull g-20250102-150405-ab12 --dir ./run1 --agent gpu1:7477,gpu2:7477`,
		Flags: clientFlags(
			&cli.StringFlag{Name: "dir", Value: ".", Usage: "download into `DIR`/<window-id>/"},
			&cli.IntFlag{Name: "rank", Usage: "only the artifacts of rank `R`", DefaultText: "every rank"},
			&cli.BoolFlag{Name: "allow-failed", Usage: "pull what a failed or cancelled window has (its partial files) instead of failing"},
			&cli.BoolFlag{Name: "force", Usage: "replace local files that differ from the window's (kept otherwise)"},
			// Until the next release: --format was pull's output format, -o its folder.
			&cli.StringFlag{Name: "format", Hidden: true},
		),
		Action: runPull,
	})
}

// pullResult is what pull did for one agent.
type pullResult struct {
	Window string       `json:"window"`
	State  string       `json:"state"`           // ready, or with --allow-failed failed or cancelled
	Error  string       `json:"error,omitempty"` // why the window failed
	Dir    string       `json:"dir"`
	Bytes  int64        `json:"bytes"`
	Files  []pulledFile `json:"files"`

	manifest *windows.Manifest // the window pulled (a group's pull reads its record)
}

type pulledFile struct {
	Name   string `json:"name"`
	Rank   *int   `json:"rank,omitempty"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Status string `json:"status"` // downloaded, resumed, replaced, up-to-date
}

func runPull(c *cli.Context) error {
	pos, err := positional(c, 1, 1, "one WINDOW")
	if err != nil {
		return err
	}
	o := pullOptions{force: c.Bool("force"), allowFailed: c.Bool("allow-failed")}
	if c.IsSet("rank") {
		r := c.Int("rank")
		o.rank = &r
	}
	dir, err := pullDeprecations(c)
	if err != nil {
		return err
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	// One agent's download draws a bar on a terminal; several report in the table.
	o.progress = len(s.agents) == 1 && isTerminal(c.App.ErrWriter)
	o.stderr = c.App.ErrWriter
	if isGroupRef(pos[0]) {
		return runPullGroup(c, s, pos[0], dir, o) // group_pull.go
	}
	outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
		o := o
		o.dir = dir
		if len(s.agents) > 1 {
			// Window ids are only unique per agent: keep each agent's windows apart.
			o.dir = filepath.Join(dir, agentDirName(ac.base))
		}
		res, err := pullWindow(ctx, ac, pos[0], o)
		if err != nil {
			return nil, err // a half-done pull is not a result to print
		}
		return res, nil
	})
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) { printPull(w, v.(*pullResult)) })
}

// pullDeprecations applies the flags of the previous release, `-o DIR` and `--format
// F`, with a note on stderr, and returns the download folder.
func pullDeprecations(c *cli.Context) (string, error) {
	dir, stderr := c.String("dir"), c.App.ErrWriter
	if f := c.String("format"); f != "" {
		fmt.Fprintf(stderr, "nsys-agent: pull --format is deprecated and goes away in the next release: use -o %s\n", shellQuote(f))
		if c.IsSet("output") && c.String("output") != f {
			return "", usagef("pull: --format and -o: give -o only (it is the output format: table or json)")
		}
		if err := c.Set("output", f); err != nil {
			return "", err
		}
	}
	o := c.String("output")
	if o == "table" || o == "json" {
		return dir, nil
	}
	if c.IsSet("dir") {
		return "", usagef("pull: -o is the output format (table or json), got %q; the folder goes in --dir", o)
	}
	fmt.Fprintf(stderr, "nsys-agent: pull -o DIR is deprecated and goes away in the next release: use --dir %s (-o is the output format: table or json)\n", shellQuote(o))
	return o, c.Set("output", "table")
}

// pullOptions are pull's flags for one agent.
type pullOptions struct {
	dir  string // the window goes into dir/<id>/, or into dir itself when flat
	flat bool   // a group's member: its files and manifest.json right in dir (DIR/<host>/)
	// again, when set, are the words of the pull command to suggest in hints (a group's
	// pull is repeated by the group id and its DIR, not by one window).
	again []string
	rank  *int // only this rank's artifacts
	force bool // replace local files that differ
	// allowFailed pulls what a failed or cancelled window has; otherwise it is an error.
	allowFailed bool
	progress    bool      // draw a transferBar on stderr
	stderr      io.Writer // where it goes
}

// agentDirName makes a folder name of an agent URL: http://gpu-1:7477 -> gpu-1_7477
// (a pulled group's host folders are named the same way).
func agentDirName(base string) string { return fleet.HostDir(base) }

// pullWords are the words of the pull command that fetches window id again.
func (o pullOptions) pullWords(id string) []string {
	words := append([]string(nil), o.again...)
	if words == nil {
		words = []string{"pull", id, "--dir", o.dir}
	}
	if o.rank != nil {
		words = append(words, "--rank", strconv.Itoa(*o.rank))
	}
	return words
}

func pullWindow(ctx context.Context, ac *apiClient, window string, o pullOptions) (*pullResult, error) {
	m, err := ac.lookup(ctx, window)
	if err != nil {
		return nil, err
	}
	if err := checkLocalName(m.ID); err != nil {
		return nil, fmt.Errorf("agent %s sent an unusable window id: %w", ac.base, err)
	}
	if !m.State.Terminal() {
		hint := "wait for it with " + ac.command("wait", m.ID) + ", then pull"
		if m.State == windows.StateCapturing || m.State == windows.StateRequested {
			hint = "stop it with " + ac.command("stop", m.ID) + " (which waits for its report), then pull"
		}
		return nil, &clientError{Agent: ac.base, Message: fmt.Sprintf("window %s is still %s", m.ID, m.State), Hint: hint}
	}
	if m.State != windows.StateReady && !o.allowFailed {
		err := windowOutcome(ac, m).(*clientError)
		words := o.pullWords(m.ID)
		what := "its partial files"
		if len(m.Artifacts) == 0 {
			what = "whatever it has (nothing now)"
		}
		err.Hint = fmt.Sprintf("%s lists what it left; to pull %s anyway, run %s",
			ac.command("show", m.ID), what, ac.command(append(words, "--allow-failed")...))
		return nil, err
	}
	var arts []windows.Artifact
	for _, a := range m.Artifacts {
		if o.rank != nil && (a.Rank == nil || *a.Rank != *o.rank) {
			continue
		}
		if err := checkLocalName(a.Name); err != nil {
			return nil, fmt.Errorf("agent %s listed an unusable artifact name: %w", ac.base, err)
		}
		arts = append(arts, a)
	}
	if o.rank != nil && len(arts) == 0 {
		return nil, &clientError{Agent: ac.base, Message: fmt.Sprintf("window %s has no artifacts of rank %d", m.ID, *o.rank),
			Hint: "see its artifacts with " + ac.command("show", m.ID)}
	}
	parent, into := o.dir, filepath.Join(o.dir, m.ID)
	if o.flat {
		parent, into = filepath.Dir(o.dir), o.dir
	}
	if err := privateDir(parent, into); err != nil { // reports embed the target's environment
		return nil, err
	}

	// Settle what is there before downloading anything: a file of the user's that
	// differs is kept unless --force.
	local := make([]string, len(arts))
	var conflicts []string
	for i, a := range arts {
		local[i] = localState(filepath.Join(into, a.Name), a)
		if local[i] == "differs" {
			conflicts = append(conflicts, filepath.Join(into, a.Name))
		}
	}
	manifestPath := filepath.Join(into, "manifest.json")
	if !ownManifest(manifestPath, m.ID) {
		conflicts = append(conflicts, manifestPath)
	}
	if len(conflicts) > 0 && !o.force {
		words := o.pullWords(m.ID)
		return nil, &clientError{Agent: ac.base,
			Message: fmt.Sprintf("%s: not window %s's files, kept; nothing was downloaded", strings.Join(conflicts, ", "), m.ID),
			Hint:    "to replace them, run " + ac.command(append(words, "--force")...) + "; or pull into another --dir"}
	}

	var bar *transferBar
	if o.progress {
		var total int64
		for i, a := range arts {
			if local[i] != "up-to-date" {
				total += a.Bytes
			}
		}
		bar = newTransferBar(o.stderr, m.ID, total)
		defer bar.finish()
	}
	res := &pullResult{Window: m.ID, State: string(m.State), Error: m.Error, Dir: into, Files: []pulledFile{}, manifest: m}
	for i, a := range arts {
		status := local[i]
		if status != "up-to-date" {
			if status, err = pullArtifact(ctx, ac, m.ID, a, into, bar); err != nil {
				return res, err
			}
			if local[i] == "differs" {
				status = "replaced"
			}
		}
		res.Files = append(res.Files, pulledFile{Name: a.Name, Rank: a.Rank, Bytes: a.Bytes, SHA256: a.SHA256, Status: status})
		res.Bytes += a.Bytes
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return res, err
	}
	if err := atomicfile.Write(manifestPath, append(b, '\n'), 0o600); err != nil {
		return res, err
	}
	return res, nil
}

// localState says what is at path for artifact a: "absent", "up-to-date" (ours, and
// verified), or "differs" (anything else: another file, a link, a folder).
func localState(path string, a windows.Artifact) string {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return "absent"
	}
	if sum, n, err := hashFile(path); err == nil && n == a.Bytes && sum == a.SHA256 {
		return "up-to-date"
	}
	return "differs"
}

// ownManifest reports whether path is absent or a manifest of window id, which pull
// wrote before and may refresh.
func ownManifest(path, id string) bool {
	return ownJSON(path, id, func(m *windows.Manifest) string { return m.ID })
}

// ownJSON reports whether path is absent or a JSON document (a manifest, a group record)
// whose id, as idOf reads it, is id: a file pull wrote before and may refresh. Anything
// else at path is the user's and stays unless --force.
func ownJSON[T any](path, id string, idOf func(*T) string) bool {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return true
	}
	f, err := openExisting(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var v T
	return json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&v) == nil && idOf(&v) == id
}

// checkLocalName refuses names that would leave the download folder: they come from
// the network.
func checkLocalName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) || name == "manifest.json" {
		return fmt.Errorf("%q is not a plain file name", name)
	}
	return nil
}

// pullArtifact brings one artifact to dir/<name>, verified. A download in progress is
// kept as <name>.part and resumed with a Range request; the final name appears only
// once the sha256 matches (a rename, which replaces whatever had the name, never
// writing through it).
func pullArtifact(ctx context.Context, ac *apiClient, window string, a windows.Artifact, dir string, bar *transferBar) (string, error) {
	final := filepath.Join(dir, a.Name)
	part := final + ".part"
	status, err := download(ctx, ac, window, a, part, bar)
	if err != nil {
		var me *mismatchError
		if !errors.As(err, &me) || !me.resumed {
			return "", err
		}
		// The partial file itself may have been bad (download removed it): one fresh
		// try before giving up.
		if status, err = download(ctx, ac, window, a, part, bar); err != nil {
			return "", err
		}
	}
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	return status, nil
}

type mismatchError struct {
	name, want, got string
	resumed         bool
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s: sha256 mismatch: the agent's manifest says %s, the download is %s; the file was discarded, run pull again", e.name, e.want, e.got)
}

// download writes the artifact to part, resuming from what part already holds.
func download(ctx context.Context, ac *apiClient, window string, a windows.Artifact, part string, bar *transferBar) (string, error) {
	f, err := openPartial(part)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	// Hash what is already there: the resumed file is verified as a whole.
	have, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if have >= a.Bytes && have > 0 {
		// Longer than the artifact (or complete but wrong): start over.
		have = 0
		h.Reset()
	}
	req, err := ac.newRequest(ctx, http.MethodGet,
		"/v1/windows/"+url.PathEscape(window)+"/artifacts/"+url.PathEscape(a.Name), nil)
	if err != nil {
		return "", err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		// If the file changed on the agent, If-Range makes it send the whole new file.
		req.Header.Set("If-Range", `"`+a.SHA256+`"`)
	}
	resp, err := ac.send(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	status := "downloaded"
	switch {
	case have > 0 && resp.StatusCode == http.StatusPartialContent:
		status = "resumed"
	default:
		// A whole file (range ignored, or none asked): write from the start.
		have = 0
		h.Reset()
	}
	if err := f.Truncate(have); err != nil {
		return "", err
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return "", err
	}
	bar.already(a.Name, have)
	n, err := io.Copy(io.MultiWriter(f, h), &countingReader{r: resp.Body, bar: bar, file: a.Name})
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w (run pull again to resume)", a.Name, err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 || have+n != a.Bytes {
		f.Close()
		os.Remove(part) // a bad file must not be resumed
		bar.already(a.Name, -(have + n))
		return "", &mismatchError{name: a.Name, want: a.SHA256, got: got, resumed: status == "resumed"}
	}
	return status, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := openExisting(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func printPull(w io.Writer, r *pullResult) {
	tw := newTable(w)
	fmt.Fprintln(tw, "FILE\tRANK\tSIZE\tSTATUS")
	for _, f := range r.Files {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, rankString(f.Rank), humanBytes(f.Bytes), f.Status)
	}
	tw.Flush()
	what := "window " + r.Window
	if r.State != "" && r.State != string(windows.StateReady) {
		what += " " + r.State
		if r.Error != "" {
			what += " (" + r.Error + ")"
		}
	}
	files := "files"
	if len(r.Files) == 1 {
		files = "file"
	}
	fmt.Fprintf(w, "%s: %d %s, %s, verified, in %s\n", what, len(r.Files), files, humanBytes(r.Bytes), r.Dir)
}
