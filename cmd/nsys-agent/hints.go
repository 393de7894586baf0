package main

import "strings"

// shellQuote quotes s for a POSIX shell when it needs it, so a hint can be pasted as is.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:=@%+,", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// command writes a command line for a hint: nsys-agent, words, and the flags that reach
// this agent as this run did (never the token itself), so the hint works when pasted.
func (c *apiClient) command(words ...string) string {
	parts := []string{"nsys-agent"}
	for _, w := range words {
		parts = append(parts, shellQuote(w))
	}
	for _, f := range c.hintFlags {
		parts = append(parts, shellQuote(f))
	}
	return "`" + strings.Join(parts, " ") + "`"
}
