package core

import "context"

// Blobs is the port of a content-addressed blob store: where a store puts
// the bodies too large for its own items (a step output above DynamoDB's
// item limit goes to S3) and keeps only their hash. Blobs are immutable: a
// hash names one content forever, so Put is idempotent (putting the same
// hash again is a success that changes nothing) and a reader may cache
// what Get returns. Every blob belongs to a tenant, and one tenant never
// reads another's.
type Blobs interface {
	// Put stores data as tenant's blob hash, the lowercase hex SHA-256 of
	// data; EINVALID when hash is not that.
	Put(ctx context.Context, tenant, hash string, data []byte) error
	// Get returns tenant's blob hash; ENOTFOUND when it has none.
	Get(ctx context.Context, tenant, hash string) ([]byte, error)
}
