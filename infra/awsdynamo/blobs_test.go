package awsdynamo

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/infra/awss3"
)

// blobBucket is the bucket the tests' blob stores use.
const blobBucket = "stepwise-blobs"

// bucket is an S3 blob store on the emulator, with what a test needs to
// reach behind it.
type bucket struct {
	*awss3.Store
	client *s3.Client
	name   string
}

// blobStore returns an S3 blob store on the emulator's server over a new
// bucket.
func (em *emulator) blobStore(t *testing.T) bucket {
	t.Helper()
	client := s3.NewFromConfig(em.cfg, func(o *s3.Options) { o.UsePathStyle = true })
	name := fmt.Sprintf("%s-%d", blobBucket, em.tables.Add(1))
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("CreateBucket(%s): %v", name, err)
	}
	return bucket{Store: awss3.New(client, name), client: client, name: name}
}

// drop deletes tenant's blob hash behind the store's back.
func (b bucket) drop(t *testing.T, tenant, hash string) {
	t.Helper()
	if _, err := b.client.DeleteObject(context.Background(), &s3.DeleteObjectInput{
		Bucket: aws.String(b.name), Key: aws.String(tenant + "/" + hash),
	}); err != nil {
		t.Fatalf("DeleteObject(%s): %v", hash, err)
	}
}

// blobRef returns the hash a body attribute refers to, failing t when
// the attribute is not a reference.
func blobRef(t *testing.T, body []byte) string {
	t.Helper()
	if len(body) != 65 || body[0] != bodyBlob {
		t.Fatalf("body is %d bytes with tag %q; want only a blob reference (65 bytes, tag %q)", len(body), body[0], bodyBlob)
	}
	return string(body[1:])
}

func TestExecutionStoreWithBlobs(t *testing.T) {
	em := startEmulator(t)
	coretest.ExecutionStoreSuite(t, func(t *testing.T) core.ExecutionStore {
		blobs := em.blobStore(t)
		// A threshold this low sends every state and step body to S3.
		return em.store(t).WithBlobs(blobs, 16)
	})
}

func TestBlobs(t *testing.T) {
	em := startEmulator(t)
	ctx := context.Background()

	t.Run("TwoMegabyteStepOutputRoundTrips", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t).WithBlobs(blobs, 0)
		big := incompressible(2 << 20) // about 1.2 MB compressed
		e := coretest.NewExecution("default", "big")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatalf("CreateExecution: %v", err)
		}
		e.Vars["t1"] = core.String(big)
		st := &core.Step{Tenant: "default", ExecutionID: "big", Index: 1, TaskID: "t1", Output: core.String(big)}
		if err := s.CommitExecution(ctx, e, st); err != nil {
			t.Fatalf("CommitExecution of a 2 MB step: %v", err)
		}
		for _, sk := range []string{skState, stepSK(1)} {
			it := rawItem(t, s, execPK("default", "big"), sk)
			hash := blobRef(t, rawBody(t, it))
			if n := itemSize(it); n > 1<<10 {
				t.Errorf("%s item is %d bytes; want only the reference and small attributes", sk, n)
			}
			if _, err := blobs.Get(ctx, "default", hash); err != nil {
				t.Errorf("%s: the referenced blob %s is not in S3: %v", sk, hash, err)
			}
		}
		steps, err := s.ListSteps(ctx, "default", "big", 0, 0)
		if err != nil || len(steps) != 1 {
			t.Fatalf("ListSteps = %d steps, %v", len(steps), err)
		}
		if got, err := steps[0].Output.Text(); err != nil || !bytes.Equal([]byte(got), []byte(big)) {
			t.Errorf("step output read back is %d bytes (%v) and differs from the %d bytes committed", len(got), err, len(big))
		}
		got, err := s.GetExecution(ctx, "default", "big")
		if err != nil || got.Vars["t1"] != core.String(big) || got.Version != 2 || len(got.Chain.Tasks) != 1 {
			t.Errorf("GetExecution: %v; want version 2 with the 2 MB variable and the chain", err)
		}
		page, err := s.ListExecutions(ctx, "default", core.ExecutionQuery{})
		if err != nil || len(page.Executions) != 1 || page.Executions[0].Vars["t1"] != core.String(big) {
			t.Errorf("ListExecutions: %v; want the execution with its 2 MB variable", err)
		}
	})

	t.Run("SmallBodiesStayInTheItem", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t).WithBlobs(blobs, 0)
		e := coretest.NewExecution("default", "small")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitExecution(ctx, e, &core.Step{Tenant: "default", ExecutionID: "small", Index: 1, Output: core.String("ok")}); err != nil {
			t.Fatal(err)
		}
		for _, sk := range []string{skState, stepSK(1)} {
			if tag := rawBody(t, rawItem(t, s, execPK("default", "small"), sk))[0]; tag != bodyPlain {
				t.Errorf("%s body tag %q, want it inline and plain", sk, tag)
			}
		}
	})

	t.Run("ThresholdIsTheEncodedSize", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t).WithBlobs(blobs, 4<<10)
		e := coretest.NewExecution("default", "threshold")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			output string
			blob   bool
		}{
			// 100 KB of one phrase compresses far below 4 KB.
			{"CompressibleStaysInline", strings.Repeat("the same words ", 7000), false},
			{"IncompressibleGoesToS3", incompressible(16 << 10), true},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st := &core.Step{Tenant: "default", ExecutionID: "threshold", Index: i + 1, Output: core.String(tt.output)}
				if err := s.CommitExecution(ctx, e, st); err != nil {
					t.Fatal(err)
				}
				body := rawBody(t, rawItem(t, s, execPK("default", "threshold"), stepSK(i+1)))
				if got := body[0] == bodyBlob; got != tt.blob {
					t.Errorf("body tag %q: in S3 = %v, want %v", body[0], got, tt.blob)
				}
				steps, err := s.ListSteps(ctx, "default", "threshold", i, 1)
				if err != nil || len(steps) != 1 || steps[0].Output != core.String(tt.output) {
					t.Errorf("ListSteps: %v; the output did not round-trip", err)
				}
			})
		}
	})

	t.Run("MissingBlobIsInternalNamingTheHash", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t).WithBlobs(blobs, 0)
		e := coretest.NewExecution("default", "lost")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		e.Vars["t1"] = core.String(incompressible(1 << 20))
		st := &core.Step{Tenant: "default", ExecutionID: "lost", Index: 1, Output: core.String(incompressible(1 << 20))}
		if err := s.CommitExecution(ctx, e, st); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			sk   string
			read func() error
		}{
			{"State", skState, func() error { _, err := s.GetExecution(ctx, "default", "lost"); return err }},
			{"Step", stepSK(1), func() error { _, err := s.ListSteps(ctx, "default", "lost", 0, 0); return err }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hash := blobRef(t, rawBody(t, rawItem(t, s, execPK("default", "lost"), tt.sk)))
				blobs.drop(t, "default", hash)
				err := tt.read()
				if core.ErrorCode(err) != core.EINTERNAL || !strings.Contains(err.Error(), hash) {
					t.Errorf("read with its blob gone = %v, want internal naming %s", err, hash)
				}
			})
		}
	})

	t.Run("ReferenceWithoutBlobsIsInternal", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t)
		e := coretest.NewExecution("default", "ref")
		if err := s.WithBlobs(blobs, 0).CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		st := &core.Step{Tenant: "default", ExecutionID: "ref", Index: 1, Output: core.String(incompressible(1 << 20))}
		if err := s.WithBlobs(blobs, 0).CommitExecution(ctx, e, st); err != nil {
			t.Fatal(err)
		}
		hash := blobRef(t, rawBody(t, rawItem(t, s, execPK("default", "ref"), stepSK(1))))
		if _, err := s.ListSteps(ctx, "default", "ref", 0, 0); core.ErrorCode(err) != core.EINTERNAL || !strings.Contains(err.Error(), hash) {
			t.Errorf("ListSteps without blobs = %v, want internal naming %s", err, hash)
		}
	})

	t.Run("FailedPutWritesNothing", func(t *testing.T) {
		blobs := em.blobStore(t)
		s := em.store(t)
		e := coretest.NewExecution("default", "unput")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		gone := awss3.New(blobs.client, "no-such-bucket")
		st := &core.Step{Tenant: "default", ExecutionID: "unput", Index: 1, Output: core.String(incompressible(1 << 20))}
		err := s.WithBlobs(gone, 0).CommitExecution(ctx, e, st)
		if core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "step 1") {
			t.Errorf("CommitExecution with S3 failing = %v, want unavailable naming the step", err)
		}
		if rawItem(t, s, execPK("default", "unput"), stepSK(1)) != nil || e.Version != 1 {
			t.Error("a commit whose blob could not be put wrote its step")
		}
		if got, err := s.GetExecution(ctx, "default", "unput"); err != nil || got.Version != 1 {
			t.Errorf("execution after a failed put: %v; want it unchanged at version 1", err)
		}
	})
}
