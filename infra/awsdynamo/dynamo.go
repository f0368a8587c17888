// Package awsdynamo is the store of stepwise on AWS: catalog records,
// executions and their steps in one DynamoDB table, through aws-sdk-go-v2.
// *Store implements core.RecordStore, core.ExecutionStore and core.Counters with the same
// semantics as infra/sqlite, and passes the same core/coretest suites.
//
// # Table
//
// One table (single-table design) with a string partition key PK and a
// string sort key SK, on-demand capacity, and one global secondary index,
// GSI1 (GSI1PK, GSI1SK, projecting every attribute), which lists records
// and executions newest first. Every partition key begins with the tenant,
// so one tenant's items never share a key with another's. The tenant and
// the kind are escaped ("%" → "%25", "#" → "%23") so that no tenant or
// kind can forge another's prefix; ids and keys come last and are kept
// as they are, so that they sort as Go compares strings (byte order).
//
//	item          PK                    SK               other attributes
//	record        T#<tenant>#R#<kind>   R#<id>           id, keys (L of S, in order), body (B), write,
//	                                                     version (N), createdAt, updatedAt (N),
//	                                                     GSI1PK = PK, GSI1SK = <created>#<id>
//	record key    T#<tenant>#R#<kind>   K#<key>          id: the record holding the key
//	execution     T#<tenant>#E#<id>     #STATE           id, version (N), status, chainId, write,
//	                                                     createdAt, updatedAt (N), body (B: the
//	                                                     execution's JSON without its chain),
//	                                                     GSI1PK = T#<tenant>#E, GSI1SK = <created>#<id>
//	chain         T#<tenant>#E#<id>     #CHAIN           body (B: the chain snapshot, written once)
//	step          T#<tenant>#E#<id>     S#<index, 12 digits>  body (B: the step's JSON)
//	counter       T#<tenant>#C          C#<id>           value (N), write, expiresAt (N, unix
//	                                                     seconds: the table's TTL attribute)
//
// Times are unix nanoseconds, which keeps them exact (years 1678 to 2262).
// <created> in GSI1SK is the nanoseconds with the sign bit flipped, as 20
// zero-padded digits, so that the string order is the time order; a query
// of GSI1 in descending order is then CreatedAt descending, ID descending,
// and a page's cursor (core.EncodeCursor of its last CreatedAt and ID, or a
// bare RFC 3339 timestamp) becomes the key condition GSI1SK < bound.
//
// # Writes
//
// Compare-and-swap is the condition `version = :v` on the record or
// execution item. A record's unique keys are items of their own, claimed
// with attribute_not_exists(PK) in the same TransactWriteItems as the
// record and released (deleted) in the transaction that drops them, so a
// key taken by another record cancels the whole write. An execution and
// its chain are created in one transaction; a commit is an UpdateItem of
// the execution guarded by its version or, with a step, a transaction of
// that update and the step's Put guarded by attribute_not_exists(PK): a
// stale version or a duplicate step index cancels both. A transaction
// cancelled by a concurrent transaction on the same items
// (TransactionConflict) is retried a few times; whichever condition then
// fails decides the answer. A write, once sent, is not abandoned when the
// caller's context is cancelled (only its deadline, or 10 s, ends the
// wait): DynamoDB may have applied it, and a caller told "cancelled" could
// not know whether its version moved.
//
// Every create and update of an execution or a record stores a random
// token of its own in the item's write attribute. When its condition
// fails, the item is read back: if it holds this write's version and
// token, the write was applied and only its answer was lost (the SDK
// retried a request whose response never arrived, and the retry found its
// own write), so it succeeds; if the item cannot be read, the outcome is
// unknown and the write fails with EUNAVAILABLE rather than a conflict.
// The read back does not stop when the caller's context does, as the write
// did not. Without this, a worker would drop a delivery whose commit had
// succeeded, and the execution would wait for the sweeper; a catalog write
// would answer 409 for what it did. UpdateItem has no idempotency token of
// its own, and TransactWriteItems' ClientRequestToken is not honoured by
// every emulator. A delete leaves nothing to recognise: its retry after a
// lost answer is ENOTFOUND on moto (DynamoDB answers the replayed
// ClientRequestToken with success).
//
// # Size
//
// Bodies are binary attributes, not nested maps: the JSON behind a one-byte
// tag, gzip-compressed when it is larger than 4 KB. DynamoDB refuses items
// over 400 KB; a write whose item would exceed it is EINVALID before it is
// sent, naming what was too large.
//
// A store WithBlobs (a core.Blobs, S3 in production through infra/awss3)
// keeps the encoded body of a step or an execution state larger than
// ~350 KB (DefaultBlobThreshold) in the blob store, under the SHA-256 of
// the encoded body, and writes in the item's body only the tag 'h' and
// that hash in hex (65 bytes): the claim check. The blob is put before the
// item, so an item never names a blob that was not stored; reads fetch it
// by tenant and hash. Every read of such a body, listings included, costs
// one blob Get. A referenced blob that is missing is EINTERNAL naming the
// hash (the item exists; its body is damaged). Chains and records are
// never offloaded. Without blobs, large steps and states are EINVALID.
//
// # Consistency and cost
//
// Reads by key and step listings are strongly consistent. Listings go
// through GSI1, which DynamoDB updates asynchronously: a record or
// execution written a moment ago may be missing from a listing, or listed
// in its previous state, for a fraction of a second. Filters (ID prefix,
// statuses, chain, UpdatedBefore) are FilterExpressions: DynamoDB applies
// Limit before them, so a listing queries page after page until its page
// is full or the index is exhausted. All of a tenant's executions share one
// GSI1 partition, which every commit updates (status and updatedAt are in
// it): about a thousand commits per second per tenant is its ceiling.
//
// The client is passed in, so one *dynamodb.Client (and its HTTP
// connections, kept alive) serves every invocation of a Lambda function.
//
// # Emulator divergences
//
// The tests run against moto_server 5.2.1, which checks conditions, cancels
// transactions with per-item CancellationReasons and refuses items over
// 400 KB as DynamoDB does. Where it differs:
//
//   - moto does not isolate a transaction from concurrent requests (read
//     in its source: it checks conditions and writes without a lock, and a
//     cancelled transaction restores a copy of the whole table taken when
//     it began, undoing writes other requests made meanwhile). The suites
//     did not trip over it in 30 unserialized runs, but a hit would be a
//     false failure, so the tests send moto one request at a time; the
//     stores' goroutines still interleave between requests, so the races
//     the suites provoke still happen.
//   - moto never cancels a transaction for TransactionConflict, so the
//     retry on it is tested with canned DynamoDB answers instead.
//   - Replaying a TransactWriteItems with the same ClientRequestToken (the
//     SDK fills one in and keeps it across its retries) is cancelled by
//     moto where DynamoDB answers with idempotent success. Under load
//     moto_server now and then closes a connection under a response it has
//     applied; the SDK retries, and only the write token (see Writes) then
//     tells the retry that its write was applied. TestLostAnswerToAnAppliedWrite
//     reproduces it on purpose.
//   - moto updates GSI1 synchronously, so the tests cannot show the
//     listing lag described above.
package awsdynamo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
)

// Attribute and index names.
const (
	attrPK      = "PK"
	attrSK      = "SK"
	attrGSI1PK  = "GSI1PK"
	attrGSI1SK  = "GSI1SK"
	attrID      = "id"
	attrKeys    = "keys"
	attrBody    = "body"
	attrVersion = "version"
	attrCreated = "createdAt"
	attrUpdated = "updatedAt"
	attrStatus  = "status"
	attrChainID = "chainId"
	attrWrite   = "write"
	indexGSI1   = "GSI1"
)

// Sort keys of an execution's items.
const (
	skState = "#STATE"
	skChain = "#CHAIN"
)

// tableWait is how often CreateTable looks whether the table is active.
const tableWait = 250 * time.Millisecond

// Store is a DynamoDB-backed store. It is safe for concurrent use.
type Store struct {
	client *dynamodb.Client
	table  string
	// gzipWriters recycles compressors, whose buffers are large.
	gzipWriters sync.Pool
	// blobs keeps bodies larger than blobAbove bytes; nil keeps every
	// body in its item (see WithBlobs).
	blobs     core.Blobs
	blobAbove int
}

var (
	_ core.RecordStore    = (*Store)(nil)
	_ core.ExecutionStore = (*Store)(nil)
)

// New returns a store over table through client. It does no I/O: the
// table must exist (CreateTable, the SAM template or the LocalStack init
// script create it).
func New(client *dynamodb.Client, table string) *Store {
	return &Store{client: client, table: table}
}

// CreateTable creates the table and its index as the package doc
// describes them, on-demand, waits until both are active and turns on the
// time to live (expiresAt, which counters carry). ECONFLICT if the table
// exists already.
func (s *Store) CreateTable(ctx context.Context) error {
	str := func(name string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS}
	}
	key := func(hash, rng string) []types.KeySchemaElement {
		return []types.KeySchemaElement{
			{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
		}
	}
	_, err := s.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{str(attrPK), str(attrSK), str(attrGSI1PK), str(attrGSI1SK)},
		KeySchema:            key(attrPK, attrSK),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String(indexGSI1),
			KeySchema:  key(attrGSI1PK, attrGSI1SK),
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
	})
	if isCode(err, "ResourceInUseException") {
		return core.WrapError(core.ECONFLICT, err, "create table %q: it exists already", s.table)
	}
	if err != nil {
		return s.fail(err, "create table %q", s.table)
	}
	for {
		out, err := s.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
		if err != nil {
			return s.fail(err, "wait for table %q", s.table)
		}
		if tableActive(out.Table) {
			_, err := s.client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
				TableName:               aws.String(s.table),
				TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
			})
			return s.fail(err, "turn on the time to live of table %q", s.table)
		}
		select {
		case <-ctx.Done():
			return core.WrapError(core.ETIMEOUT, ctx.Err(), "wait for table %q to become active", s.table)
		case <-time.After(tableWait):
		}
	}
}

// tableActive reports whether the table and every index of it are active.
func tableActive(t *types.TableDescription) bool {
	if t == nil || t.TableStatus != types.TableStatusActive {
		return false
	}
	for _, g := range t.GlobalSecondaryIndexes {
		if g.IndexStatus != types.IndexStatusActive {
			return false
		}
	}
	return true
}

// esc escapes a key component that other components follow, so that it
// cannot contain the separator.
func esc(s string) string {
	return strings.NewReplacer("%", "%25", "#", "%23").Replace(s)
}

func recordPK(tenant, kind string) string { return "T#" + esc(tenant) + "#R#" + esc(kind) }
func recordSK(id string) string           { return "R#" + id }

// recordKey is the key of a record's item.
func recordKey(tenant, kind, id string) item {
	return item{attrPK: attrS(recordPK(tenant, kind)), attrSK: attrS(recordSK(id))}
}
func keySK(key string) string         { return "K#" + key }
func execPK(tenant, id string) string { return "T#" + esc(tenant) + "#E#" + id }
func execListPK(tenant string) string { return "T#" + esc(tenant) + "#E" }
func stepSK(index int) string         { return fmt.Sprintf("S#%012d", index) }

// sortTime is n (unix nanoseconds) as 20 digits whose string order is the
// numeric order: the sign bit flipped makes every int64 a uint64 in order.
func sortTime(n int64) string { return fmt.Sprintf("%020d", uint64(n)^(1<<63)) }

// listSK is the GSI1 sort key of an item created at n with id.
func listSK(n int64, id string) string { return sortTime(n) + "#" + id }

// minTime is the earliest instant an int64 of unix nanoseconds holds.
func minTime() time.Time { return time.Unix(0, -1<<63) }

// maxTime is the latest instant an int64 of unix nanoseconds holds.
func maxTime() time.Time { return time.Unix(0, 1<<63-1) }

// toNanos returns t as unix nanoseconds, or EINVALID naming field when t
// is outside the years an int64 of nanoseconds covers (the zero time is).
func toNanos(t time.Time, field string) (int64, error) {
	if t.Before(minTime()) || t.After(maxTime()) {
		return 0, core.Errorf(core.EINVALID, "%s: %s is outside the years 1678 to 2262 the store can keep", field, t.Format(time.RFC3339Nano))
	}
	return t.UnixNano(), nil
}

// fromNanos is the inverse of toNanos, in UTC.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// before returns the GSI1 sort key that a page starting after pos stays
// below; bounded is false when every stored item is after pos, none true
// when none can be.
func before(pos core.Position) (bound string, bounded, none bool) {
	switch {
	case pos.CreatedAt.Before(minTime()):
		return "", false, true
	case pos.CreatedAt.After(maxTime()):
		return "", false, false
	case pos.ID == "":
		// Every id at that instant sorts after the bare time.
		return sortTime(pos.CreatedAt.UnixNano()), true, false
	default:
		return listSK(pos.CreatedAt.UnixNano(), pos.ID), true, false
	}
}
