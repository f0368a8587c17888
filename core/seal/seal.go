// Package seal encrypts secrets, such as cloud provider API keys, before
// they are stored, with AES-256-GCM under a key that lives outside the
// store (an environment variable or a key file).
//
// What it protects against: someone who obtains the database file, a
// backup or a table export without the key learns nothing of the secrets
// in it, and cannot alter one undetected (a modified value fails to open).
// What it does not protect against: someone who also has the key, or who
// controls the running process, can read every secret. Keep the key apart
// from the data, and rotate the secrets if the key leaks.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// KeySize is the size of a key in bytes (AES-256).
const KeySize = 32

// version is the first byte of every sealed value, so that a future format
// (another cipher, a key id for rotation) can be told apart from this one.
const version byte = 1

// Box seals and opens secrets with one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box that uses key, which must be KeySize bytes long.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, core.Errorf(core.EINVALID, "secret key: want %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "secret key")
	}
	// A random nonce per value: keys are sealed rarely, so the bound on
	// random 96-bit nonces under one key is never approached.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "secret key")
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext for the place named by context (for example
// "default/provider/openai"). The result is the version byte, a random
// nonce and the ciphertext with its authentication tag; sealing the same
// plaintext twice gives different results. context is authenticated, not
// stored: the value opens only with the same context, so a sealed value
// copied into another record (another tenant's, another provider's) does
// not open there.
func (b *Box) Seal(plaintext, context []byte) ([]byte, error) {
	out := make([]byte, 1, 1+b.aead.Overhead()+len(plaintext))
	out[0] = version
	return b.aead.Seal(out, nil, plaintext, additional(out[0], context)), nil
}

// additional is the authenticated data of a sealed value: its version
// byte, then the context.
func additional(v byte, context []byte) []byte {
	return append([]byte{v}, context...)
}

// Open decrypts a value made by Seal with the same key and context. A
// value that is short, of an unknown version, altered, sealed with another
// key or for another context is EINVALID; the error never contains the
// value.
func (b *Box) Open(sealed, context []byte) ([]byte, error) {
	if len(sealed) < 1+b.aead.Overhead() {
		return nil, core.Errorf(core.EINVALID, "sealed value is too short (%d bytes) to be one this key made", len(sealed))
	}
	if sealed[0] != version {
		return nil, core.Errorf(core.EINVALID, "sealed value has unknown format version %d", sealed[0])
	}
	plain, err := b.aead.Open(nil, nil, sealed[1:], additional(sealed[0], context))
	if err != nil {
		return nil, core.Errorf(core.EINVALID, "sealed value does not open: it was altered, sealed with another key, or belongs to another record")
	}
	return plain, nil
}

// ParseKey decodes a key written as hex or as base64 (standard or URL
// alphabet, padded or not) that must decode to exactly KeySize bytes. The
// error never contains s, which is a secret.
func ParseKey(s string) ([]byte, error) {
	if s == "" {
		return nil, core.Errorf(core.EINVALID, "secret key: empty; want %d bytes as base64 or hex", KeySize)
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	// A padded value never decodes under the raw encodings and the other
	// way round, so at most one standard and one URL encoding applies.
	encodings := []*base64.Encoding{base64.StdEncoding, base64.URLEncoding}
	if !strings.HasSuffix(s, "=") {
		encodings = []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding}
	}
	decoded := -1
	for _, enc := range encodings {
		k, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) == KeySize {
			return k, nil
		}
		decoded = len(k)
	}
	if decoded >= 0 {
		return nil, core.Errorf(core.EINVALID, "secret key: decodes to %d bytes, want %d", decoded, KeySize)
	}
	return nil, core.Errorf(core.EINVALID, "secret key: not base64 or hex; want %d bytes as base64 or hex", KeySize)
}

// GenerateKey returns a new random key.
func GenerateKey() []byte {
	k := make([]byte, KeySize)
	// crypto/rand.Read never fails; on a broken system it crashes the
	// program rather than return predictable bytes.
	_, _ = rand.Read(k)
	return k
}
