// Package awss3 is core.Blobs on Amazon S3: the claim-check store where
// the DynamoDB store puts bodies too large for an item (step outputs and
// checkpoints above ~350 KB) and keeps only their hash.
//
// Layout: one bucket, one object per blob, keyed "<tenant>/<hash>" where
// hash is the lowercase hex SHA-256 of the content and the tenant is
// escaped ("%" → "%25", "/" → "%2F") so that no tenant name can reach into
// another's prefix. Content addressing makes objects immutable: Put of a
// hash already stored writes the same bytes again, which is harmless, so a
// retried commit never needs to know whether its first Put landed. Put
// checks that the hash is the content's, and Get checks that the content
// still hashes to its key, so a corrupted or substituted object is an
// error rather than a wrong step output.
//
// Nothing here deletes: a blob whose execution is gone is garbage for a
// bucket lifecycle rule, which is cheaper than reference counting and can
// never drop a blob a checkpoint still names.
//
// Errors map to core codes: a missing object is ENOTFOUND; a missing bucket
// (a deployment problem the caller cannot fix), throttling, server faults
// and network failures are EUNAVAILABLE; a refused permission is
// EFORBIDDEN; an ended context is ETIMEOUT; anything else is EINTERNAL.
//
// The client is passed in, so one *s3.Client (and its kept-alive HTTP
// connections) serves every invocation of a Lambda function.
package awss3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stepwise-run/stepwise/core"
)

// Store is a bucket of content-addressed blobs. It is safe for concurrent
// use.
type Store struct {
	client *s3.Client
	bucket string
}

var _ core.Blobs = (*Store)(nil)

// New returns a store over bucket through client. It does no I/O: the
// bucket must exist (the SAM template or the LocalStack init script create
// it).
func New(client *s3.Client, bucket string) *Store {
	return &Store{client: client, bucket: bucket}
}

// Put implements core.Blobs.
func (s *Store) Put(ctx context.Context, tenant, hash string, data []byte) error {
	if err := checkHash(hash); err != nil {
		return err
	}
	if sum := Hash(data); sum != hash {
		return core.Errorf(core.EINVALID, "hash: %s is not the SHA-256 of the blob (%s)", hash, sum)
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key(tenant, hash)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	return s.fail(err, "put blob %s", hash)
}

// Get implements core.Blobs.
func (s *Store) Get(ctx context.Context, tenant, hash string) ([]byte, error) {
	if err := checkHash(hash); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(key(tenant, hash)),
	})
	if err != nil {
		return nil, s.fail(err, "get blob %s", hash)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, s.fail(err, "read blob %s", hash)
	}
	if sum := Hash(data); sum != hash {
		return nil, core.Errorf(core.EINTERNAL, "blob %s in bucket %q holds content hashing to %s", hash, s.bucket, sum)
	}
	return data, nil
}

// Hash is the name of data in a content-addressed store: its SHA-256 in
// lowercase hex.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// checkHash is EINVALID unless hash is 64 lowercase hex digits: anything
// else could not have come from Hash, and in a key it could climb out of
// its tenant's prefix.
func checkHash(hash string) error {
	if len(hash) != 2*sha256.Size {
		return core.Errorf(core.EINVALID, "hash: %q is not a hex SHA-256", hash)
	}
	for _, c := range hash {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return core.Errorf(core.EINVALID, "hash: %q is not a lowercase hex SHA-256", hash)
		}
	}
	return nil
}

// key is the object key of tenant's blob hash.
func key(tenant, hash string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(tenant) + "/" + hash
}
