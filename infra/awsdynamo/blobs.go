package awsdynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/stepwise-run/stepwise/core"
)

// DefaultBlobThreshold is the encoded body size above which a store with
// blobs puts a step's or an execution's body in the blob store: far enough
// below DynamoDB's 400 KB item limit to leave room for the item's other
// attributes.
const DefaultBlobThreshold = 350 << 10

// WithBlobs returns a store over the same client and table that keeps the
// encoded bodies of steps and execution states larger than threshold bytes
// (DefaultBlobThreshold when threshold is not positive) in blobs, under
// their SHA-256, and only a reference to them in the item. Reads resolve
// references through blobs, so every store reading the table needs blobs
// once one writes references. Chains and records are never offloaded:
// they stay refused above the item limit.
//
// The blob is put before the item is written, so a commit that then fails
// (a conflict, a duplicate step) leaves an unreferenced blob behind: it is
// garbage for the bucket's lifecycle rule, and content addressing makes
// the retry's Put of the same body harmless.
func (s *Store) WithBlobs(blobs core.Blobs, threshold int) *Store {
	if threshold <= 0 {
		threshold = DefaultBlobThreshold
	}
	return &Store{client: s.client, table: s.table, blobs: blobs, blobAbove: threshold}
}

// encodeBody packs b and, when the store has blobs and the packed body is
// larger than the threshold, puts it in the blob store under its hash and
// returns a reference to it instead. what names the body in errors.
func (s *Store) encodeBody(ctx context.Context, tenant, what string, b []byte) ([]byte, error) {
	body, err := s.pack(b)
	if err != nil || s.blobs == nil || len(body) <= s.blobAbove {
		return body, err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if err := s.blobs.Put(ctx, tenant, hash, body); err != nil {
		return nil, core.WrapError(core.ErrorCode(err), err, "%s: put its %d-byte body as blob %s", what, len(body), hash)
	}
	ref := make([]byte, 0, 1+len(hash))
	return append(append(ref, bodyBlob), hash...), nil
}

// decodeBody returns the decoded body attribute of it, fetching it from
// the blob store when the item holds a reference; nil if it has none. what
// names the body in errors.
func (s *Store) decodeBody(ctx context.Context, tenant, what string, it item) ([]byte, error) {
	b, ok := bodyOf(it)
	if !ok || len(b) == 0 || b[0] != bodyBlob {
		out, err := getBody(it)
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decode %s", what)
		}
		return out, nil
	}
	hash := string(b[1:])
	if s.blobs == nil {
		return nil, core.Errorf(core.EINTERNAL, "%s: its body is blob %s, and this store has no blob store to read it from", what, hash)
	}
	blob, err := s.blobs.Get(ctx, tenant, hash)
	if err != nil {
		code := core.ErrorCode(err)
		if code == core.ENOTFOUND {
			// The item exists; its missing body is damage, not absence.
			code = core.EINTERNAL
		}
		return nil, core.WrapError(code, err, "%s: get its body, blob %s", what, hash)
	}
	if len(blob) > 0 && blob[0] == bodyBlob {
		return nil, core.Errorf(core.EINTERNAL, "%s: blob %s is a reference to another blob", what, hash)
	}
	out, err := unpack(blob)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "%s: blob %s", what, hash)
	}
	return out, nil
}
