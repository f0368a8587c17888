package awss3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// startBucket starts moto_server for t and returns a store over a new
// bucket in it, and the client behind the store.
func startBucket(t *testing.T, bucket string) (*Store, *s3.Client) {
	t.Helper()
	client := s3.NewFromConfig(awsmoto.Start(t).Config(), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket(%s): %v", bucket, err)
	}
	return New(client, bucket), client
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStore(t *testing.T) {
	s, client := startBucket(t, "stepwise-blobs")
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		tests := []struct {
			name string
			data []byte
		}{
			{"Empty", []byte{}},
			{"Small", []byte(`{"output":"hello"}`)},
			{"TwoMegabytes", random(t, 2<<20)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := Hash(tt.data)
				if err := s.Put(ctx, "default", h, tt.data); err != nil {
					t.Fatalf("Put: %v", err)
				}
				got, err := s.Get(ctx, "default", h)
				if err != nil || !bytes.Equal(got, tt.data) {
					t.Fatalf("Get = %d bytes, %v; want the %d bytes put", len(got), err, len(tt.data))
				}
			})
		}
	})

	t.Run("PutIsIdempotent", func(t *testing.T) {
		data := []byte("the same content twice")
		h := Hash(data)
		for i := range 2 {
			if err := s.Put(ctx, "default", h, data); err != nil {
				t.Fatalf("Put #%d: %v", i+1, err)
			}
		}
		if got, err := s.Get(ctx, "default", h); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Get after two Puts = %q, %v", got, err)
		}
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		h := Hash([]byte("never stored"))
		_, err := s.Get(ctx, "default", h)
		if core.ErrorCode(err) != core.ENOTFOUND || !strings.Contains(err.Error(), h) {
			t.Errorf("Get of a missing blob = %v, want not found naming %s", err, h)
		}
	})

	t.Run("TenantsAreIsolated", func(t *testing.T) {
		data := []byte("tenant a's secret")
		h := Hash(data)
		if err := s.Put(ctx, "a", h, data); err != nil {
			t.Fatal(err)
		}
		for _, tenant := range []string{"b", "a/..", "", "A"} {
			if _, err := s.Get(ctx, tenant, h); core.ErrorCode(err) != core.ENOTFOUND {
				t.Errorf("tenant %q reads tenant a's blob: %v", tenant, err)
			}
		}
		if got, err := s.Get(ctx, "a", h); err != nil || !bytes.Equal(got, data) {
			t.Errorf("tenant a cannot read its blob: %q, %v", got, err)
		}
	})

	t.Run("TenantsCannotForgePrefixes", func(t *testing.T) {
		data := []byte("behind a slash")
		h := Hash(data)
		if err := s.Put(ctx, "x/y", h, data); err != nil {
			t.Fatal(err)
		}
		out, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("stepwise-blobs"), Key: aws.String("x%2Fy/" + h)})
		if err != nil {
			t.Fatalf("the object of tenant x/y is not at its escaped key: %v", err)
		}
		if aws.ToInt64(out.ContentLength) != int64(len(data)) {
			t.Errorf("object length %d, want %d", aws.ToInt64(out.ContentLength), len(data))
		}
	})

	t.Run("BadHashesAreInvalid", func(t *testing.T) {
		data := []byte("content")
		tests := []struct {
			name string
			hash string
		}{
			{"Empty", ""},
			{"Short", "abc"},
			{"Uppercase", strings.ToUpper(Hash(data))},
			{"PathTraversal", "../" + Hash(data)[3:]},
			{"AnotherContent", Hash([]byte("other content"))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := s.Put(ctx, "default", tt.hash, data); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "hash") {
					t.Errorf("Put = %v, want invalid naming the hash", err)
				}
			})
		}
	})

	t.Run("CorruptedObjectIsInternal", func(t *testing.T) {
		h := Hash([]byte("what the key promises"))
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("stepwise-blobs"), Key: aws.String("default/" + h), Body: strings.NewReader("something else"),
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "default", h); core.ErrorCode(err) != core.EINTERNAL || !strings.Contains(err.Error(), h) {
			t.Errorf("Get of a corrupted blob = %v, want internal naming %s", err, h)
		}
	})

	t.Run("MissingBucketIsUnavailable", func(t *testing.T) {
		other := New(client, "no-such-bucket")
		data := []byte("x")
		if err := other.Put(ctx, "default", Hash(data), data); core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Errorf("Put into a missing bucket = %v, want unavailable naming the bucket", err)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	s := New(nil, "the-bucket")
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"NoSuchKey", &types.NoSuchKey{}, core.ENOTFOUND},
		{"NotFound", &types.NotFound{}, core.ENOTFOUND},
		{"NoSuchBucket", &types.NoSuchBucket{}, core.EUNAVAILABLE},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, core.EFORBIDDEN},
		{"SlowDown", &smithy.GenericAPIError{Code: "SlowDown"}, core.EUNAVAILABLE},
		{"InvalidArgument", &smithy.GenericAPIError{Code: "InvalidArgument"}, core.EINVALID},
		{"Unreachable", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, core.EUNAVAILABLE},
		{"ServerError", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 502}}, Err: errors.New("bad gateway")}, core.EUNAVAILABLE},
		{"Deadline", context.DeadlineExceeded, core.ETIMEOUT},
		{"Unknown", errors.New("surprise"), core.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: tt.err}
			err := s.fail(wrapped, "get blob %s", "abc")
			if core.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), "the-bucket") || !errors.Is(err, tt.err) {
				t.Errorf("fail(%v) = %v (%s), want %s naming the bucket and wrapping the cause", tt.err, err, core.ErrorCode(err), tt.code)
			}
		})
	}
	if s.fail(nil, "nothing") != nil {
		t.Error("fail(nil) is not nil")
	}
}
