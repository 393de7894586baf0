// Package deploy holds the service files of docs/deployment.md; its tests check each one
// with the tool that runs it (systemd-analyze, the Kubernetes API types, bash with a
// stand-in Slurm) and every nsys-agent command line in them against the real binary.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// agentBin is nsys-agent built once for the package's tests.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "nsys-agent")
	out, err := exec.Command("go", "build", "-o", agentBin, "github.com/nsys-agent/nsys-agent/cmd/nsys-agent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building nsys-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// checkFlags runs an nsys-agent command line (argv after the binary) with --help added
// before any "--": the real flag parser refuses a flag it does not know (exit 2).
func checkFlags(t *testing.T, where string, argv []string) {
	t.Helper()
	args := append([]string(nil), argv...)
	if i := indexOf(args, "--"); i >= 0 {
		args = args[:i]
	}
	args = append(args, "--help")
	out, err := exec.Command(agentBin, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: nsys-agent %s: %v\n%s", where, strings.Join(argv, " "), err, out)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// readEnvFile reads NAME=value lines (systemd EnvironmentFile syntax, unquoted values).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not NAME=value", path, line)
		}
		env[k] = v
	}
	return env
}

var varRE = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

// systemdArgv splits a unit's command line as systemd does for what the unit uses:
// words split on blanks, a word that is ${VAR} alone becomes VAR's value as one argument,
// %d the credentials folder. A quote in the line is refused: this splitter knows none.
func systemdArgv(t *testing.T, line string, env map[string]string, credDir string) []string {
	t.Helper()
	if strings.ContainsAny(line, `"'`) {
		t.Fatalf("quotes in %q: extend systemdArgv first", line)
	}
	var argv []string
	for _, w := range strings.Fields(line) {
		w = strings.ReplaceAll(w, "%d", credDir)
		w = varRE.ReplaceAllStringFunc(w, func(m string) string {
			name := varRE.FindStringSubmatch(m)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("%s is used but not set in nsys-agent.env", name)
			}
			return v
		})
		argv = append(argv, w)
	}
	return argv
}

// TestSystemdUnit verifies the unit with systemd-analyze (any message fails: it exits 0
// on unknown keys and bad values) and runs its commands' flags through nsys-agent.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		nsystest.Missing(t, "systemd-analyze not installed; run scripts/install-test-deps.sh (Debian: apt-get install systemd)")
	}
	raw, err := os.ReadFile("nsys-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	envFile, err := filepath.Abs("nsys-agent.env")
	if err != nil {
		t.Fatal(err)
	}
	// The same unit with its paths pointing here: verify checks that ExecStart exists.
	unit := strings.ReplaceAll(string(raw), "/usr/local/bin/nsys-agent", agentBin)
	unit = strings.ReplaceAll(unit, "/etc/nsys-agent/nsys-agent.env", envFile)
	path := filepath.Join(t.TempDir(), "nsys-agent.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	env := readEnvFile(t, "nsys-agent.env")
	n := 0
	for _, line := range strings.Split(unit, "\n") {
		key, cmd, ok := strings.Cut(line, "=")
		if !ok || (key != "ExecStart" && key != "ExecStartPre") {
			continue
		}
		argv := systemdArgv(t, cmd, env, "/run/credentials/nsys-agent.service")
		if argv[0] != agentBin {
			t.Fatalf("%s runs %s, not nsys-agent", key, argv[0])
		}
		checkFlags(t, key, argv[1:])
		n++
	}
	if n != 2 {
		t.Errorf("found %d nsys-agent commands in the unit, want ExecStartPre and ExecStart", n)
	}
}

// TestKubernetesPod strictly decodes the example into the Kubernetes API's Pod (an
// unknown or misspelt field is an error), checks what the example promises, and runs
// every nsys-agent command in it through the real flag parser.
func TestKubernetesPod(t *testing.T) {
	raw, err := os.ReadFile("kubernetes-pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		t.Fatalf("kubernetes-pod.yaml is not a valid Pod: %v", err)
	}
	// The decoder is strict: the same file with one field misspelt is refused.
	var bad corev1.Pod
	if err := yaml.UnmarshalStrict(bytes.Replace(raw, []byte("shareProcessNamespace:"), []byte("shareProcessNamespaces:"), 1), &bad); err == nil {
		t.Fatal("a misspelt field was accepted: the check is not strict")
	}

	if pod.APIVersion != "v1" || pod.Kind != "Pod" {
		t.Errorf("apiVersion/kind %s/%s", pod.APIVersion, pod.Kind)
	}
	if pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace {
		t.Error("the pod must share its process namespace")
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 300 {
		t.Error("the grace period must cover one nsys stop (5 min)")
	}
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = true
	}
	all := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	byName := map[string]corev1.Container{}
	for _, c := range all {
		byName[c.Name] = c
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("container %s mounts %q, which is not a volume of the pod", c.Name, m.Name)
			}
		}
		if len(c.Command) > 0 && strings.HasSuffix(c.Command[0], "/nsys-agent") {
			checkFlags(t, "container "+c.Name, c.Command[1:])
		}
	}
	server, ok := byName["server"]
	if !ok || len(server.Command) < 2 || server.Command[1] != "run" {
		t.Fatalf("no server container whose entrypoint is nsys-agent run: %+v", server.Command)
	}
	if _, ok := server.Resources.Limits["nvidia.com/gpu"]; !ok {
		t.Error("the server container asks for no GPU")
	}
	if _, ok := byName["nsys-agent"]; !ok {
		t.Error("no nsys-agent sidecar")
	}
	if p, ok := byName["preflight"]; !ok || len(p.Command) < 2 || p.Command[1] != "doctor" {
		t.Error("no preflight init container running nsys-agent doctor")
	}
}

// TestSlurmRecipe runs the sbatch script as Slurm would on one node, with a stand-in
// srun and scontrol, the real nsys and the real agent; the server is the built-in demo
// target. The agent answers with the job's session, and SIGTERM (what Slurm sends at
// --signal time) ends it cleanly.
func TestSlurmRecipe(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "slurm-nsys-agent.sbatch").CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	nsysPath := nsystest.Require(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "task.pid")
	// srun: drop its options, run the task as node 0 (the task's pid is the agent's: both
	// bash -c and the script exec). scontrol show hostnames: this host.
	for name, body := range map[string]string{
		"srun":     "while [[ $1 == --* ]]; do shift; done\nexport SLURM_NODEID=0 SLURM_PROCID=0\necho $$ >" + pidFile + "\nexec \"$@\"\n",
		"scontrol": "echo localhost\n",
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	tokenFile := filepath.Join(dir, "secret", "token")
	jobID := fmt.Sprint(time.Now().UnixNano() % 1_000_000_000)
	cmd := exec.Command("bash", "slurm-nsys-agent.sbatch")
	cmd.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"SLURM_JOB_ID="+jobID, "SLURM_JOB_NODELIST=localhost", "SLURM_JOB_NUM_NODES=1", "SLURM_GPUS_ON_NODE=1",
		"NSYS_AGENT="+agentBin, "NSYS_AGENT_NSYS="+nsysPath, "NSYS_AGENT_PORT="+port,
		"NSYS_AGENT_TOKEN_FILE="+tokenFile, "NSYS_AGENT_DATA="+filepath.Join(dir, "data"),
		"NSYS_AGENT_SERVER="+agentBin+" demo-server --port 0 --ranks 1",
		"TMPDIR="+os.TempDir(),
	)
	var out nsystest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The agent inherits the output pipe: Wait must not hang on it if the agent outlives
	// a failed test.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	session := "nsys-agent-" + jobID + "-0"
	ended := false
	t.Cleanup(func() {
		if ended {
			return
		}
		// A failed test: end the agent as Slurm would, then whatever is left.
		if pid := taskPID(pidFile); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		r := nsys.NewExecRunner(nsysPath)
		if list, err := nsys.ListSessions(context.Background(), r); err == nil {
			if _, ok := nsys.Lookup(list, session); ok {
				(&nsys.Controller{Runner: r, Session: session}).Kill(context.Background())
			}
		}
	})

	base := "http://127.0.0.1:" + port
	status := waitStatus(t, base, tokenFile, done, &out)
	if status.Session.Name != session {
		t.Errorf("the agent runs session %q, want %q (named after the job and node)", status.Session.Name, session)
	}
	if st, err := os.Stat(tokenFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, mode %v (want 0600)", err, st.Mode().Perm())
	}
	for _, want := range []string{"http://localhost:" + port, "nothing here stops a capture"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("job output does not say %q:\n%s", want, out.String())
		}
	}

	pid := taskPID(pidFile)
	if pid <= 0 {
		t.Fatalf("the stand-in srun wrote no pid to %s", pidFile)
	}
	// What Slurm sends the step's tasks at --signal time and at the job's end.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		ended = true
		if err != nil {
			t.Errorf("the job ended with %v after the agent was signalled\n%s", err, out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the job did not end after the agent was signalled\n%s", out.String())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// waitStatus polls GET /v1/status with the job's token until the agent answers.
func waitStatus(t *testing.T, base, tokenFile string, done <-chan error, out *nsystest.Buffer) agent.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("the job ended before its agent answered: %v\n%s", err, out.String())
		default:
		}
		if tok, err := os.ReadFile(tokenFile); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				var st agent.Status
				decErr := json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				cancel()
				if resp.StatusCode == http.StatusOK && decErr == nil && st.Target.State == "running" {
					return st
				}
			} else {
				cancel()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no agent answered at %s\n%s", base, out.String())
	return agent.Status{}
}

// taskPID reads the pid the stand-in srun wrote (0 if none yet).
func taskPID(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscan(string(raw), &pid); err != nil {
		return 0
	}
	return pid
}
