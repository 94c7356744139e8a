package archtest

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	// maxMethods is the most methods any type may have.
	maxMethods = 15
	// maxMutexes is the most sync.Mutex or sync.RWMutex fields any struct
	// may hold: one owner, one lock.
	maxMutexes = 1
	// coordinator is Fortress's coordinator, kept under coordinatorLines.
	coordinator      = "pkg/fortress/fortress.go"
	coordinatorLines = 300
)

// knownExceptions are types over a limit that another change must fix
// ("package/path.Type": what is over). The test fails once one is within
// its limits, so the list only shrinks.
var knownExceptions = map[string]string{
	// None today: keep it that way.
}

// typeShape is what the test counts of one type.
type typeShape struct {
	where   string
	methods map[string]bool // by name: one method in several build-tagged files counts once
	mutexes int
}

// TestTypeShape fails if a type of the module (non-test, non-generated
// files; other modules below it excluded) has more than maxMethods methods
// or more than maxMutexes mutex fields.
func TestTypeShape(t *testing.T) {
	root := moduleRoot(t)
	types := map[string]*typeShape{}
	get := func(key, where string) *typeShape {
		s := types[key]
		if s == nil {
			s = &typeShape{where: where, methods: map[string]bool{}}
			types[key] = s
		}
		if s.where == "" {
			s.where = where
		}
		return s
	}
	files := 0
	fset := token.NewFileSet()
	for _, path := range sourceFiles(t, root) {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if ast.IsGenerated(f) {
			continue
		}
		files++
		rel, _ := filepath.Rel(root, path)
		pkg := filepath.ToSlash(filepath.Dir(rel))
		syncName := importName(f, "sync")
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) == 0 {
					continue
				}
				name := receiverType(d.Recv.List[0].Type)
				get(pkg+"."+name, "").methods[d.Name.Name] = true
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok {
						continue
					}
					s := get(pkg+"."+ts.Name.Name, fset.Position(ts.Pos()).String())
					if st, ok := ts.Type.(*ast.StructType); ok && syncName != "" {
						s.mutexes = max(s.mutexes, mutexFields(st, syncName))
					}
				}
			}
		}
	}
	if files < 100 {
		t.Fatalf("only %d source files found under %s: the walk is broken", files, root)
	}
	for k := range knownExceptions {
		if types[k] == nil {
			t.Errorf("known exception %s names no type of the module", k)
		}
	}
	var keys []string
	for k := range types {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := types[k]
		var over []string
		if n := len(s.methods); n > maxMethods {
			over = append(over, fmt.Sprintf("%d methods (at most %d)", n, maxMethods))
		}
		if s.mutexes > maxMutexes {
			over = append(over, fmt.Sprintf("%d mutexes (at most %d)", s.mutexes, maxMutexes))
		}
		if _, known := knownExceptions[k]; known {
			if len(over) == 0 {
				t.Errorf("%s is within its limits now: remove it from knownExceptions", k)
			}
			continue
		}
		if len(over) > 0 {
			t.Errorf("%s (%s): %s; split it into types that each own one thing", k, s.where, strings.Join(over, ", "))
		}
	}
}

// TestCoordinatorSmall keeps Fortress's coordinator a coordinator.
func TestCoordinatorSmall(t *testing.T) {
	f, err := os.Open(filepath.Join(moduleRoot(t), coordinator))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n >= coordinatorLines {
		t.Errorf("%s has %d lines, want under %d: move layer work into its controller", coordinator, n, coordinatorLines)
	}
}

// mutexFields counts sync.Mutex and sync.RWMutex fields (named, embedded,
// by value or pointer) of st, including those of anonymous struct fields.
func mutexFields(st *ast.StructType, syncName string) int {
	n := 0
	for _, fld := range st.Fields.List {
		typ := fld.Type
		if p, ok := typ.(*ast.StarExpr); ok {
			typ = p.X
		}
		names := max(len(fld.Names), 1)
		switch typ := typ.(type) {
		case *ast.SelectorExpr:
			if x, ok := typ.X.(*ast.Ident); ok && x.Name == syncName && (typ.Sel.Name == "Mutex" || typ.Sel.Name == "RWMutex") {
				n += names
			}
		case *ast.StructType:
			n += names * mutexFields(typ, syncName)
		}
	}
	return n
}

func receiverType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return fmt.Sprintf("%T", e)
		}
	}
}

// importName is the name under which f imports path ("" if it does not).
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != path {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return filepath.Base(path)
	}
	return ""
}

// sourceFiles lists the module's non-test .go files, leaving out other
// modules, testdata and hidden directories.
func sourceFiles(t *testing.T, root string) []string {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}
