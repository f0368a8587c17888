// Package stepwise_test holds the repository-wide rules that are checked
// by tests rather than by review: the import direction of the layout and
// that every package documents itself.
package stepwise_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/stepwise-run/stepwise"

// pkg is the part of `go list -json` these tests read.
type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// rel is a package path relative to the module ("core/llm").
func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func under(path, dir string) bool {
	r := rel(path)
	return strings.HasPrefix(path, module) && (r == dir || strings.HasPrefix(r, dir+"/"))
}

// TestDependencyDirection enforces DESIGN.md's layout: events <- core <-
// core/* <- infra/* <- functions/* <- entry points, with core and events
// free of infrastructure, AWS and Lambda code, even transitively.
func TestDependencyDirection(t *testing.T) {
	forbiddenForDomain := []string{
		module + "/infra", module + "/functions", module + "/cmd",
		"github.com/aws/aws-sdk-go-v2", "github.com/aws/aws-lambda-go", "github.com/aws/aws-sdk-go",
	}
	for _, p := range listPackages(t) {
		switch {
		case under(p.ImportPath, "core") || under(p.ImportPath, "events"):
			for _, d := range p.Deps {
				for _, f := range forbiddenForDomain {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s: core and events must not reach infra, functions, cmd, the AWS SDK or aws-lambda-go", rel(p.ImportPath), d)
					}
				}
			}
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if msg := layerViolation(p.ImportPath, imp); msg != "" {
				t.Errorf("%s imports %s: %s", rel(p.ImportPath), rel(imp), msg)
			}
		}
	}
}

// layerViolation says why from may not import to, or "".
func layerViolation(from, to string) string {
	switch {
	case under(from, "events") && !under(to, "events"):
		return "events imports nothing else of stepwise"
	case rel(from) == "core" && !under(to, "events"):
		return "core imports only events; packages below core import core, never the reverse"
	case under(from, "core") && (under(to, "infra") || under(to, "functions") || under(to, "cmd")):
		return "core/* must not import adapters or entry points"
	case under(from, "core") && suiteOf(to) != "" && suiteOf(from) == "":
		return suiteOf(to) + " is for tests only"
	case under(from, "infra") && under(to, "infra") && !under(to, "infra/internal") &&
		strings.Split(rel(from), "/")[1] != strings.Split(rel(to), "/")[1]:
		// infra/internal holds what adapters share (awserr), not an adapter.
		return "adapters never import each other"
	case under(from, "infra/internal") && under(to, "infra") && !under(to, "infra/internal"):
		return "what adapters share must not import an adapter"
	case under(from, "infra") && (under(to, "functions") || under(to, "cmd")):
		return "adapters must not import functions or entry points"
	case under(from, "functions") && under(to, "cmd"):
		return "functions must not import entry points"
	}
	return ""
}

func TestLayerRules(t *testing.T) {
	tests := []struct {
		from, to string
		allowed  bool
	}{
		{"core", "events", true},
		{"core", "core/llm", false},
		{"core/llm", "core", true},
		{"core/llm/ollama", "core/llm", true},
		{"core/hooks", "infra/mem", false},
		{"core/llm", "core/coretest", false},
		{"core/llm", "core/llm/llmtest", false},
		{"core/llm/ollama", "core/llm/llmtest", false},
		{"core/llm/llmtest", "core/coretest", true},
		{"core/llm/llmtest", "core/llm", true},
		{"core/llm/llmtest", "core/llm/fakellm", true},
		{"events", "core", false},
		{"infra/mem", "core", true},
		{"infra/mem", "infra/sqlite", false},
		{"infra/awssqs", "infra/internal/awserr", true},
		{"infra/internal/awserr", "infra/awssqs", false},
		{"infra/sqlite", "cmd/stepwise", false},
		{"functions/api", "infra/sqlite", true},
		{"functions/api", "cmd/stepwise", false},
		{"cmd/stepwise", "functions/api", true},
	}
	for _, tt := range tests {
		t.Run(tt.from+"->"+tt.to, func(t *testing.T) {
			msg := layerViolation(module+"/"+tt.from, module+"/"+tt.to)
			if (msg == "") != tt.allowed {
				t.Errorf("layerViolation(%s, %s) = %q, want allowed=%v", tt.from, tt.to, msg, tt.allowed)
			}
		})
	}
}

// suites are the packages of conformance suites: they import testing and
// are imported only from _test.go files. core/coretest holds the suites of
// core's ports; core/llm/llmtest the one every llm.Provider must pass, which
// the ollama and openai tests run.
var suites = []string{"core/coretest", "core/llm/llmtest", "infra/awsmoto", "functions/internal/functest"}

// suiteOf returns the suite package path is in, or "".
func suiteOf(path string) string {
	for _, s := range suites {
		if under(path, s) {
			return s
		}
	}
	return ""
}

// TestNoTestingInProduction keeps the testing package out of shipped code;
// only the conformance suites, which are imported from tests, may use it.
func TestNoTestingInProduction(t *testing.T) {
	pkgs := listPackages(t)
	for _, s := range suites {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return rel(p.ImportPath) == s }) {
			t.Errorf("suite package %s does not exist; drop it from suites", s)
		}
	}
	for _, p := range pkgs {
		if suiteOf(p.ImportPath) != "" {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "testing" {
				t.Errorf("%s imports testing outside its _test.go files", rel(p.ImportPath))
			}
		}
	}
}

// TestPackageDocs requires exactly one package comment in every package.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue // only tests, like this one
		}
		var documented []string
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = append(documented, f)
			}
		}
		switch len(documented) {
		case 1:
		case 0:
			t.Errorf("%s has no package comment", rel(p.ImportPath))
		default:
			t.Errorf("%s has %d package comments (%s); keep exactly one", rel(p.ImportPath), len(documented), strings.Join(documented, ", "))
		}
	}
}
