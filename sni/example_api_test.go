package sni_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// sni is importable: its examples, which go doc shows to importers, may use
// only what the package itself exports, not helpers of its test files.
func TestExamplesUseOnlyExportedAPI(t *testing.T) {
	fset := token.NewFileSet()
	exported := map[string]bool{}
	var examples []*ast.File
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, "_test.go") {
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if d.Recv == nil {
						exported[d.Name.Name] = true
					}
				case *ast.GenDecl:
					for _, s := range d.Specs {
						switch s := s.(type) {
						case *ast.TypeSpec:
							exported[s.Name.Name] = true
						case *ast.ValueSpec:
							for _, n := range s.Names {
								exported[n.Name] = true
							}
						}
					}
				}
			}
			continue
		}
		if f.Name.Name == "sni_test" {
			examples = append(examples, f)
		}
	}
	for _, f := range examples {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Example") {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "sni" && !exported[sel.Sel.Name] {
						t.Errorf("%s: %s uses sni.%s, which only the package's tests define", fset.Position(sel.Pos()), fn.Name.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
}
