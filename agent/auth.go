package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// TokenHeader is the alternative to "Authorization: Bearer" for clients that cannot set
// the standard header (some proxies strip it).
const TokenHeader = "X-Nsys-Agent-Token"

// TokenID is a short, non-secret fingerprint of a token: the first 8 hex digits of its
// sha256. It names the token in logs and manifests so the token itself never appears.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// tokenSet holds the sha256 of every accepted token. Comparing digests of fixed length
// keeps the comparison constant-time even in the token's length, which
// subtle.ConstantTimeCompare on the raw strings would leak.
type tokenSet struct {
	digests [][sha256.Size]byte
}

func newTokenSet(tokens []string) *tokenSet {
	ts := &tokenSet{}
	for _, t := range tokens {
		if t == "" {
			continue // an empty token would let an empty header in
		}
		ts.digests = append(ts.digests, sha256.Sum256([]byte(t)))
	}
	return ts
}

// enabled reports whether requests must carry a token.
func (ts *tokenSet) enabled() bool { return len(ts.digests) > 0 }

// match reports whether presented is one of the tokens. Every configured token is
// compared, with no early exit, so the time taken does not say which one matched.
func (ts *tokenSet) match(presented string) bool {
	if presented == "" {
		return false
	}
	d := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range ts.digests {
		ok |= subtle.ConstantTimeCompare(d[:], ts.digests[i][:])
	}
	return ok == 1
}

// presentedToken reads the token from the Authorization header or TokenHeader. Tokens
// are accepted only in headers: a query parameter would end up in access logs.
func presentedToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get(TokenHeader))
}
