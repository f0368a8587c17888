package lambdaenv_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bootstraps is the test binary's store of built bootstraps. Building is
// the slow part of the bootstrap tests and benchmarks, so each function is
// built at most once per architecture and test binary, when a test first
// needs it; TestMain removes them.
var bootstraps = &bootstrapStore{builds: map[string]*bootstrapBuild{}}

// bootstrapStore builds bootstraps into dir, once each.
type bootstrapStore struct {
	dir    string
	mu     sync.Mutex
	builds map[string]*bootstrapBuild
}

// bootstrapBuild is one function built for one architecture.
type bootstrapBuild struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stepwise-bootstrap-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bootstraps.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// makeTarget is the Makefile's target building fn's bootstrap, which `sam
// build` and `make build-lambda` run.
func makeTarget(fn string) (string, bool) {
	switch fn {
	case "api":
		return "build-ApiFunction", true
	case "worker":
		return "build-WorkerFunction", true
	case "openai":
		return "build-OpenAIFunction", true
	case "ingest":
		return "build-IngestFunction", true
	}
	return "", false
}

// get returns the bootstrap of fn ("api", "worker", "openai" or "ingest")
// for goos/goarch, building it the first time it is asked for.
func (s *bootstrapStore) get(tb testing.TB, fn, goos, goarch string) string {
	tb.Helper()
	target, ok := makeTarget(fn)
	if !ok {
		tb.Fatalf("no function %q", fn)
	}
	key := fn + "-" + goos + "-" + goarch
	s.mu.Lock()
	b := s.builds[key]
	if b == nil {
		b = &bootstrapBuild{}
		s.builds[key] = b
	}
	s.mu.Unlock()
	b.once.Do(func() {
		start := time.Now()
		b.path, b.err = makeBootstrap(target, goos, goarch, filepath.Join(s.dir, key))
		tb.Logf("built %s for %s/%s in %v", fn, goos, goarch, time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// makeBootstrap runs `make build-<LogicalId> ARTIFACTS_DIR=dir` in the
// repository and returns the bootstrap it wrote. The recipe sets GOOS=linux
// GOARCH=arm64 in front of $(GO); for any other platform GO is `env
// GOOS=... GOARCH=... go`, whose assignments come after the recipe's and
// win, so that the binary the tests run differs from the zip's only in its
// architecture: tags, -trimpath, -ldflags and CGO_ENABLED are the
// Makefile's.
func makeBootstrap(target, goos, goarch, dir string) (string, error) {
	if _, err := exec.LookPath("make"); err != nil {
		return "", fmt.Errorf("the Lambda bootstraps are built with make: %w", err)
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		return "", err
	}
	args := []string{"--no-print-directory", "-C", root, target, "ARTIFACTS_DIR=" + dir}
	if goos != "linux" || goarch != "arm64" {
		args = append(args, "GO=env GOOS="+goos+" GOARCH="+goarch+" go")
	}
	cmd := exec.Command("make", args...)
	// A make running these tests must not hand its jobserver down.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return filepath.Join(dir, "bootstrap"), nil
}

// TestBootstrapArm64 builds the four functions as the zips hold them
// (make build-<LogicalId>: linux/arm64 for Graviton, which this test does
// not need to run) and checks what provided.al2023 needs of a bootstrap
// and what the Makefile promises: an aarch64 ELF executable, statically
// linked (no interpreter, nothing dynamic: the image has no Go runtime and
// no guaranteed libc), stripped (no symbol table, no DWARF), built with
// lambda.norpc and CGO off, and carrying no path of the machine that
// built it (-trimpath), so the same commit builds the same zip anywhere.
func TestBootstrapArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the function binaries")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	// The paths a build could leak: the checkout, the module cache, GOROOT.
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	machinePaths := append(strings.Fields(string(out)), root)

	tests := []struct {
		fn  string
		pkg string
	}{
		{"api", "github.com/stepwise-run/stepwise/functions/api/lambda"},
		{"worker", "github.com/stepwise-run/stepwise/functions/worker/lambda"},
		{"openai", "github.com/stepwise-run/stepwise/functions/openai/lambda"},
		{"ingest", "github.com/stepwise-run/stepwise/functions/ingest/lambda"},
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			bin := bootstraps.get(t, tt.fn, "linux", "arm64")
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatalf("not an ELF file: %v", err)
			}
			defer f.Close()
			if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Errorf("ELF %v %v %v, want EM_AARCH64 ELFCLASS64 ET_EXEC", f.Machine, f.Class, f.Type)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("program header %v: the binary is dynamically linked", p.Type)
				}
			}
			for _, s := range f.Sections {
				if s.Name == ".symtab" || s.Name == ".dynsym" || strings.HasPrefix(s.Name, ".debug") || strings.HasPrefix(s.Name, ".zdebug") {
					t.Errorf("section %s: the binary is not stripped (-ldflags \"-s -w\")", s.Name)
				}
			}

			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatalf("build info: %v", err)
			}
			if info.Path != tt.pkg {
				t.Errorf("main package %s, want %s", info.Path, tt.pkg)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			for k, want := range map[string]string{"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0", "-tags": "lambda.norpc", "-trimpath": "true"} {
				if settings[k] != want {
					t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
				}
			}

			data, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range machinePaths {
				if bytes.Contains(data, []byte(p)) {
					t.Errorf("the binary holds the build machine's path %s", p)
				}
			}
		})
	}
}
