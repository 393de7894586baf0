package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// wait-ready FILE [TIMEOUT]: wait until FILE holds the agent's URL, then set $AGENT to it.
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: wait-ready FILE [TIMEOUT]")
	}
	timeout := optDuration(ts, args, 1, 2*time.Minute)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		raw, err := os.ReadFile(ts.MkAbs(args[0]))
		if url := strings.TrimSpace(string(raw)); err == nil && url != "" {
			ts.Setenv("AGENT", url)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%s not written within %s", args[0], timeout)
}

// verify-pulled DIR N: DIR holds N window folders, each with a manifest whose every
// artifact is present with the listed size and sha256 (checked here, independently of
// the client's own verification).
func cmdVerifyPulled(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: verify-pulled DIR N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	manifests, _ := filepath.Glob(filepath.Join(ts.MkAbs(args[0]), "*", "manifest.json"))
	if len(manifests) != want {
		ts.Fatalf("want %d pulled windows, found %d", want, len(manifests))
	}
	for _, mf := range manifests {
		raw, err := os.ReadFile(mf)
		ts.Check(err)
		var m windows.Manifest
		ts.Check(json.Unmarshal(raw, &m))
		if m.State != windows.StateReady || len(m.Artifacts) == 0 {
			ts.Fatalf("window %s: state %s, %d artifacts", m.ID, m.State, len(m.Artifacts))
		}
		for _, a := range m.Artifacts {
			data, err := os.ReadFile(filepath.Join(filepath.Dir(mf), a.Name))
			ts.Check(err)
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(data)) != a.Bytes {
				ts.Fatalf("window %s: %s does not match its manifest", m.ID, a.Name)
			}
			ts.Logf("verified %s/%s (%d bytes, sha256 %s…)", m.ID, a.Name, a.Bytes, a.SHA256[:12])
		}
	}
}

// sleep DURATION: pause the script (the testscript in use has no sleep).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

var rankStartRE = regexp.MustCompile(`Rank (\d+) worker started \(pid (\d+)\)`)

// rank-activity GLOB TARGETLOG N: the sqlite export matching GLOB has OS-runtime (CPU)
// events of each of the N rank worker pids that TARGETLOG announced.
func cmdRankActivity(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: rank-activity SQLITE-GLOB TARGETLOG N")
	}
	matches, _ := filepath.Glob(ts.MkAbs(args[0]))
	if len(matches) != 1 {
		ts.Fatalf("want one sqlite export matching %s, found %v", args[0], matches)
	}
	want, _ := strconv.Atoi(args[2])
	f, err := os.Open(ts.MkAbs(args[1]))
	ts.Check(err)
	defer f.Close()
	pids := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := rankStartRE.FindStringSubmatch(sc.Text()); m != nil {
			pids[m[1]] = m[2]
		}
	}
	if len(pids) != want {
		ts.Fatalf("target log announced %d rank workers, want %d: %v", len(pids), want, pids)
	}
	db, err := sql.Open("sqlite", matches[0])
	ts.Check(err)
	defer db.Close()
	for rank, pidText := range pids {
		pid, _ := strconv.Atoi(pidText)
		var n int
		err := db.QueryRow(`SELECT count(*) FROM OSRT_API WHERE ((globalTid >> 24) & 16777215) = ?`, pid).Scan(&n)
		ts.Check(err)
		if n == 0 {
			ts.Fatalf("rank %s (pid %d): no CPU (OS runtime) events in %s", rank, pid, filepath.Base(matches[0]))
		}
		ts.Logf("rank %s (pid %d): %d OS runtime events", rank, pid, n)
	}
}

// gen-certs DIR: a CA, a server certificate for 127.0.0.1 and a client certificate, all
// signed by the CA, as PEM files ca.pem, server.pem/server.key, client.pem/client.key.
func cmdGenCerts(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: gen-certs DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o700))
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ts.Check(err)
		return k
	}
	write := func(name, typ string, der []byte) {
		ts.Check(os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nsys-agent test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ts.Check(err)
	ca, err := x509.ParseCertificate(caDER)
	ts.Check(err)
	write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: ips,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		ts.Check(err)
		kder, err := x509.MarshalECPrivateKey(k)
		ts.Check(err)
		write(name+".pem", "CERTIFICATE", der)
		write(name+".key", "EC PRIVATE KEY", kder)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
}

// reports-contain GLOB STRING: some file matching GLOB (reports, exports) holds STRING
// as bytes; with !, none does. nsys 2022.4 keeps command lines and environments as plain
// strings in both the .nsys-rep and its SQLite export.
func cmdReportsContain(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: [!] reports-contain GLOB STRING")
	}
	files, err := filepath.Glob(ts.MkAbs(args[0]))
	ts.Check(err)
	if len(files) == 0 {
		ts.Fatalf("no file matches %s", args[0])
	}
	var holders []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		ts.Check(err)
		if bytes.Contains(data, []byte(args[1])) {
			holders = append(holders, filepath.Base(f))
		}
	}
	switch {
	case neg && len(holders) > 0:
		ts.Fatalf("%q is in %v", args[1], holders)
	case !neg && len(holders) == 0:
		ts.Fatalf("%q is in none of %d files", args[1], len(files))
	}
}

// optDuration is a script command's optional duration argument args[i] (a timeout), or
// def when the command was not given one.
func optDuration(ts *testscript.TestScript, args []string, i int, def time.Duration) time.Duration {
	if len(args) <= i {
		return def
	}
	d, err := time.ParseDuration(args[i])
	ts.Check(err)
	return d
}
