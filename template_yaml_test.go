package stepwise_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// loadTemplate reads a CloudFormation template into maps, lists and
// scalars. The short forms of the intrinsic functions (!Ref, !GetAtt,
// !Sub, ...) are YAML tags that a plain decode refuses; they become the
// long forms ({"Ref": x}, {"Fn::GetAtt": [resource, attribute]}), so that
// a test compares values however they are spelled.
func loadTemplate(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, err := cfnValue(&doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func cfnValue(n *yaml.Node) (any, error) {
	if tag := n.Tag; strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!") {
		plain := *n
		plain.Tag = ""
		if plain.Kind == yaml.ScalarNode {
			plain.Tag = "!!str"
		}
		v, err := cfnValue(&plain)
		if err != nil {
			return nil, err
		}
		name := "Fn::" + tag[1:]
		switch tag {
		case "!Ref", "!Condition":
			name = tag[1:]
		case "!GetAtt":
			if s, ok := v.(string); ok {
				resource, attr, _ := strings.Cut(s, ".")
				v = []any{resource, attr}
			}
		}
		return map[string]any{name: v}, nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("line %d: key %q twice", n.Content[i].Line, key)
			}
			v, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	default:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return v, nil
	}
}

// lookup follows keys through nested maps; nil when one is missing.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func asList(v any) []any { l, _ := v.([]any); return l }

// awsdynamoSource parses infra/awsdynamo's shipped files.
func awsdynamoSource(t *testing.T) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, "infra/awsdynamo", func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range pkgs {
		for _, f := range p.Files {
			files = append(files, f)
		}
	}
	return files
}

// awsdynamoConsts returns the key and index names of infra/awsdynamo's
// table, read from its constants.
func awsdynamoConsts(t *testing.T) map[string]string {
	t.Helper()
	consts := map[string]string{}
	for _, f := range awsdynamoSource(t) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						consts[name.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	for _, name := range []string{"attrPK", "attrSK", "attrGSI1PK", "attrGSI1SK", "indexGSI1"} {
		if consts[name] == "" {
			t.Fatalf("infra/awsdynamo declares no string constant %s: compare its table with template.yaml again and update this test", name)
		}
	}
	return consts
}

// createTableUses reports whether (*Store).CreateTable in infra/awsdynamo
// names the selector sel (such as types.BillingModePayPerRequest).
func createTableUses(t *testing.T, sel string) bool {
	t.Helper()
	for _, f := range awsdynamoSource(t) {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "CreateTable" || fd.Recv == nil || fd.Body == nil {
				continue
			}
			found := false
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if se, ok := n.(*ast.SelectorExpr); ok && se.Sel.Name == sel {
					found = true
				}
				return !found
			})
			return found
		}
	}
	t.Fatal("infra/awsdynamo has no CreateTable method")
	return false
}
