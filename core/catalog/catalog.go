// Package catalog is the typed view of what stepwise stores besides
// executions: task chains, backends, declared models, affinity groups and
// their assignments, and cloud provider keys. It validates every write
// (naming the field at fault), keeps names and URLs unique, protects the
// built-in groups and the configured default models, seals provider keys
// before they reach the store, and turns it all into the Snapshot the
// router is built from. Records live in a core.RecordStore, so every store
// adapter serves the catalog without knowing its types.
//
// Routing and groups. A backend that belongs to no group serves every model
// it lists. A backend assigned to one or more groups serves only the models
// assigned to those groups; those are also the models the download queue
// pulls onto it. (The reference system made backends outside groups
// invisible; here registering a backend is enough to use it.)
package catalog

import (
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
)

// Sealer encrypts secrets before they are stored and decrypts them when
// they are used. context names the record a secret belongs to; a value
// opens only with the context it was sealed for.
type Sealer interface {
	Seal(plaintext, context []byte) ([]byte, error)
	Open(sealed, context []byte) ([]byte, error)
}

// Config holds a Catalog's dependencies.
type Config struct {
	// Store keeps the records. Required.
	Store core.RecordStore
	// Sealer encrypts provider keys. Required for the provider methods.
	Sealer Sealer
	// Defaults are the configured default models; they cannot be deleted
	// or removed from their built-in group.
	Defaults Defaults
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewID makes backend and group ids (default: UUIDv7).
	NewID func() string
	// ProviderURLs replace the base URL of a cloud provider's backend, by
	// provider type ("openai": a proxy or gateway in front of OpenAI). The
	// URL is set when the provider's key is configured.
	ProviderURLs map[string]string
}

// Catalog reads and writes the catalog of one store for any tenant.
type Catalog struct {
	store    core.RecordStore
	sealer   Sealer
	defaults Defaults
	now      func() time.Time
	newID    func() string
	// providerURLs is Config.ProviderURLs.
	providerURLs map[string]string
}

// New returns a Catalog over cfg.Store. It does no I/O.
func New(cfg Config) *Catalog {
	c := &Catalog{store: cfg.Store, sealer: cfg.Sealer, defaults: cfg.Defaults, now: cfg.Now, newID: cfg.NewID, providerURLs: cfg.ProviderURLs}
	if c.now == nil {
		c.now = time.Now
	}
	if c.newID == nil {
		// UUIDv7 sorts by creation time, like the listings do.
		c.newID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	return c
}
