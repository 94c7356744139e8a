package fortress

import (
	"errors"
	"go/ast"
	"go/build"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestUnsupportedError(t *testing.T) {
	err := unsupportedOn("darwin", "arm64")
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("errors.Is(%v, ErrUnsupported) = false", err)
	}
	if !strings.Contains(err.Error(), "darwin/arm64") {
		t.Fatalf("error %q does not name the platform", err)
	}
}

// TestAPISameOnEveryPlatform compares the exported API of the Linux build
// with the one every other platform compiles (fortress_other.go): a host
// agent that builds against one must build against the others.
func TestAPISameOnEveryPlatform(t *testing.T) {
	if os.Getenv("FORTRESS_VMLAB") == "1" { // testutil.LabEnv; testutil is Linux-only
		// The lab VM holds the test binary, not the package's sources; the
		// host run (and the cross-builds) check this.
		t.Skip("skipped in the VM lab: it reads the package's source files, which only the host has")
	}
	linux := exportedAPI(t, "linux", "amd64")
	if len(linux) < 20 || linux["func Start"] == "" {
		t.Fatalf("the Linux API looks incomplete (%d names): the parser missed files", len(linux))
	}
	for _, p := range [][2]string{{"darwin", "arm64"}, {"windows", "amd64"}, {"linux", "arm64"}} {
		other := exportedAPI(t, p[0], p[1])
		if reflect.DeepEqual(linux, other) {
			continue
		}
		for _, d := range apiDiff(linux, other) {
			t.Errorf("%s/%s: %s", p[0], p[1], d)
		}
	}
}

// exportedAPI maps every exported name of the package, as built for
// goos/goarch, to its signature: a function's type, a struct's exported
// fields with their tags, a type's definition; values by name only.
func exportedAPI(t *testing.T, goos, goarch string) map[string]string {
	t.Helper()
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = goos, goarch, false
	pkg, err := ctx.ImportDir(".", 0)
	if err != nil {
		t.Fatalf("list files for %s/%s: %v", goos, goarch, err)
	}
	fset := token.NewFileSet()
	str := func(n ast.Node) string {
		var b strings.Builder
		if err := printer.Fprint(&b, fset, n); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	api := map[string]string{}
	for _, name := range pkg.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				key := "func " + d.Name.Name
				if d.Recv != nil {
					recv := d.Recv.List[0].Type
					if s, ok := recv.(*ast.StarExpr); ok {
						recv = s.X
					}
					if !recv.(*ast.Ident).IsExported() {
						continue
					}
					key = "method " + str(d.Recv.List[0].Type) + "." + d.Name.Name
				}
				api[key] = str(d.Type)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							api["type "+s.Name.Name] = typeString(s.Type, str)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								api[d.Tok.String()+" "+n.Name] = "declared"
							}
						}
					}
				}
			}
		}
	}
	return api
}

// typeString prints a type; of a struct only the exported fields count.
func typeString(e ast.Expr, str func(ast.Node) string) string {
	st, ok := e.(*ast.StructType)
	if !ok {
		return str(e)
	}
	var fields []string
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			tag = " " + f.Tag.Value
		}
		for _, n := range f.Names {
			if n.IsExported() {
				fields = append(fields, n.Name+" "+str(f.Type)+tag)
			}
		}
		if len(f.Names) == 0 {
			fields = append(fields, "embedded "+str(f.Type))
		}
	}
	return "struct{" + strings.Join(fields, "; ") + "}"
}

func apiDiff(want, got map[string]string) []string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, "missing "+k)
		case g != w:
			out = append(out, k+": "+g+", on linux/amd64 "+w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	sort.Strings(out)
	return out
}
