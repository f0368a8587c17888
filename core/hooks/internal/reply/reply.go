// Package reply holds what the hooks that call HTTP services share: reading
// a capped answer, decoding it as JSON when it is JSON, quoting it in an
// error, and checking header names.
package reply

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// ReadCapped reads at most limit bytes of r, reporting whether there was
// more. A cut lands on a rune boundary so that the text stays valid UTF-8.
// The rest of a longer body is never read.
func ReadCapped(r io.Reader, limit int) ([]byte, bool, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil || len(data) <= limit {
		return data, false, err
	}
	cut := limit
	for i := limit; i > limit-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(data[i]) {
			cut = i
			break
		}
	}
	return data[:cut], true, nil
}

// Decode decodes an answer as JSON, keeping numbers exact (json.Number).
// An answer labelled JSON by contentType may be any JSON value; an
// unlabelled or text one counts as JSON only if it is an object or array,
// so that a plain-text "42" or "ok" stays the string it was meant as.
func Decode(data []byte, contentType string) (any, bool) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || !isJSONMedia(contentType) && trimmed[0] != '{' && trimmed[0] != '[' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// isJSONMedia reports whether a Content-Type names JSON
// (application/json or a +json type).
func isJSONMedia(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// Brief renders the start of an answer for an error message: one line,
// valid UTF-8, at most n bytes.
func Brief(data []byte, n int) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(data), "\uFFFD")), " ")
	if len(s) <= n {
		return s
	}
	return Cut(s, n) + "…"
}

// Cut returns the longest start of s of at most n bytes that does not
// split a character.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ValidHeaderName reports whether s is an HTTP token (RFC 9110 §5.6.2).
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
