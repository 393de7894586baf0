package main

import (
	"strings"
	"testing"
)

func TestTokenFromArgv(t *testing.T) {
	cases := []struct {
		args, clean, token string
		found              bool
	}{
		{"nsys-agent run --token abc --listen x", "nsys-agent run --listen x", "abc", true},
		{"nsys-agent run --token=abc", "nsys-agent run", "abc", true},
		{"nsys-agent stop -token abc w1", "nsys-agent stop w1", "abc", true},
		{"nsys-agent run -- server --token keep", "nsys-agent run -- server --token keep", "", false},
		{"nsys-agent run --token-file f", "nsys-agent run --token-file f", "", false},
		{"nsys-agent run --token", "nsys-agent run --token", "", false},
	}
	for _, c := range cases {
		clean, tok, found := tokenFromArgv(strings.Fields(c.args))
		if strings.Join(clean, " ") != c.clean || tok != c.token || found != c.found {
			t.Errorf("%q: got %q %q %v", c.args, strings.Join(clean, " "), tok, found)
		}
	}
}

func TestReadTokenFDRefusesNonsense(t *testing.T) {
	for _, v := range []string{"x", "1", "-4"} {
		if _, err := readTokenFD(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}
