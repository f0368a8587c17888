package seal_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
)

var _ catalog.Sealer = (*seal.Box)(nil)

func newBox(t *testing.T, key []byte) *seal.Box {
	t.Helper()
	b, err := seal.New(key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	box := newBox(t, seal.GenerateKey())
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"Empty", []byte{}},
		{"APIKey", []byte("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")},
		{"Binary", []byte{0, 1, 2, 255, 254}},
		{"Large", bytes.Repeat([]byte("x"), 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := box.Seal(tt.plaintext, []byte("t/provider/openai"))
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext) {
				t.Fatal("sealed value contains the plaintext")
			}
			again, err := box.Seal(tt.plaintext, []byte("t/provider/openai"))
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if bytes.Equal(sealed, again) {
				t.Error("sealing twice gave the same bytes; the nonce is not random")
			}
			got, err := box.Open(sealed, []byte("t/provider/openai"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	key := seal.GenerateKey()
	box := newBox(t, key)
	secret := []byte("sk-very-secret-key-material")
	ctx := []byte("default/provider/openai")
	sealed, err := box.Seal(secret, ctx)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name    string
		box     *seal.Box
		sealed  []byte
		context string
		want    string
	}{
		{"OtherRecord", box, sealed, "default/provider/gemini", "belongs to another record"},
		{"OtherTenant", box, sealed, "acme/provider/openai", "belongs to another record"},
		{"Nil", box, nil, "", "too short"},
		{"Short", box, sealed[:10], "", "too short"},
		{"Truncated", box, sealed[:len(sealed)-1], "", "does not open"},
		{"UnknownVersion", box, flip(0), "", "unknown format version"},
		{"TamperedNonce", box, flip(1), "", "does not open"},
		{"TamperedCiphertext", box, flip(len(sealed) - len(secret) - 17), "", "does not open"},
		{"TamperedTag", box, flip(len(sealed) - 1), "", "does not open"},
		{"WrongKey", newBox(t, seal.GenerateKey()), sealed, "", "does not open"},
		{"Foreign", box, []byte("\x01plain text that was never sealed by anyone"), "", "does not open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			context := ctx
			if tt.context != "" {
				context = []byte(tt.context)
			}
			got, err := tt.box.Open(tt.sealed, context)
			if err == nil {
				t.Fatalf("Open = %q, want an error", got)
			}
			if code := core.ErrorCode(err); code != core.EINVALID {
				t.Errorf("code = %s, want %s", code, core.EINVALID)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), string(secret)) || (len(tt.sealed) > 8 && strings.Contains(err.Error(), string(tt.sealed[1:]))) {
				t.Errorf("error %q echoes the data", err)
			}
		})
	}
}

func TestNewRejectsKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		t.Run(fmt.Sprintf("%dBytes", n), func(t *testing.T) {
			_, err := seal.New(make([]byte, n))
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("New(%d bytes) = %v, want EINVALID", n, err)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	key := seal.GenerateKey()
	// A key whose encodings use the characters that differ between the
	// standard and the URL alphabets.
	special := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32]
	tests := []struct {
		name string
		in   string
		want []byte
	}{
		{"Hex", hex.EncodeToString(key), key},
		{"HexUpper", strings.ToUpper(hex.EncodeToString(key)), key},
		{"StdPadded", base64.StdEncoding.EncodeToString(special), special},
		{"StdRaw", base64.RawStdEncoding.EncodeToString(special), special},
		{"URLPadded", base64.URLEncoding.EncodeToString(special), special},
		{"URLRaw", base64.RawURLEncoding.EncodeToString(special), special},
		{"StdRandom", base64.StdEncoding.EncodeToString(key), key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seal.ParseKey(tt.in)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("ParseKey = %x, want %x", got, tt.want)
			}
			if _, err := seal.New(got); err != nil {
				t.Errorf("New(parsed key): %v", err)
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"Empty", "", "empty"},
		{"ShortHex", hex.EncodeToString(make([]byte, 16)), "decodes to 24 bytes"},
		{"LongBase64", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 48)), "decodes to 48 bytes"},
		{"ShortBase64", base64.RawURLEncoding.EncodeToString([]byte("sixteen-byte-key")), "decodes to 16 bytes"},
		{"Garbage", "this is not a key at all!!", "not base64 or hex"},
		{"BadHex64", strings.Repeat("zz", 32), "decodes to 48 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seal.ParseKey(tt.in)
			if err == nil {
				t.Fatalf("ParseKey = %x, want an error", got)
			}
			if core.ErrorCode(err) != core.EINVALID {
				t.Errorf("code = %s, want %s", core.ErrorCode(err), core.EINVALID)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.in != "" && strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q echoes the key", err)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := seal.GenerateKey(), seal.GenerateKey()
	if len(a) != seal.KeySize || len(b) != seal.KeySize {
		t.Fatalf("key sizes %d and %d, want %d", len(a), len(b), seal.KeySize)
	}
	if bytes.Equal(a, b) {
		t.Error("two generated keys are equal")
	}
}
