package eventually

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxTestSleep is the longest time.Sleep with a literal duration a test
// may call outside a synctest bubble.
const maxTestSleep = 100 * time.Millisecond

// TestNoLongSleepsInTests keeps the module's tests off the wall clock: no
// _test.go file may call time.Sleep with a literal duration above
// maxTestSleep or with time.Until(...). A test waits for the event it is
// about with That, or runs its timers in a testing/synctest bubble, where
// time.Sleep moves a fake clock (calls written inside the function passed
// to synctest.Test are therefore allowed).
func TestNoLongSleepsInTests(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root %s has no go.mod: %v", root, err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		for _, s := range longSleeps(f) {
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s:%d: %s; wait for the event with eventually.That (homemq/internal/eventually), or run the timers in a testing/synctest bubble",
				rel, fset.Position(s.pos).Line, s.why)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("found only %d test files under %s: is the walk looking in the right place?", files, root)
	}
}

// sleep is a forbidden time.Sleep call.
type sleep struct {
	pos token.Pos
	why string
}

// longSleeps returns the calls of time.Sleep in f with a literal duration
// above maxTestSleep or with time.Until, outside functions passed to
// synctest.Test.
func longSleeps(f *ast.File) []sleep {
	timePkg, synctestPkg := importName(f, "time"), importName(f, "testing/synctest")
	if timePkg == "" {
		return nil
	}
	var found []sleep
	inspect := func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if synctestPkg != "" && isPkgFunc(call.Fun, synctestPkg, "Test") {
			return false // a bubble: time.Sleep moves its fake clock
		}
		if !isPkgFunc(call.Fun, timePkg, "Sleep") || len(call.Args) != 1 {
			return true
		}
		arg := call.Args[0]
		if callsUntil(arg, timePkg) {
			found = append(found, sleep{call.Pos(), "time.Sleep(time.Until(...)) sleeps until an instant"})
		} else if d, ok := literalDuration(arg, timePkg); ok && d > float64(maxTestSleep) {
			found = append(found, sleep{call.Pos(), "time.Sleep(" + time.Duration(d).String() + ") is longer than " + maxTestSleep.String()})
		}
		return true
	}
	ast.Inspect(f, inspect)
	return found
}

// importName is the name f uses for the package at path ("" if f does not
// import it).
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return path[strings.LastIndex(path, "/")+1:]
		}
	}
	return ""
}

// isPkgFunc reports whether fun is pkg.name.
func isPkgFunc(fun ast.Expr, pkg, name string) bool {
	sel, ok := fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// callsUntil reports whether e contains a call of time.Until.
func callsUntil(e ast.Expr, timePkg string) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok && isPkgFunc(c.Fun, timePkg, "Until") {
			found = true
		}
		return !found
	})
	return found
}

var units = map[string]time.Duration{
	"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
	"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

// literalDuration evaluates e if it is a duration written with literals
// and time's units only (3 * time.Second, 1500 * time.Millisecond,
// time.Duration(2e9)); ok is false for anything that involves a variable.
func literalDuration(e ast.Expr, timePkg string) (float64, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.INT && e.Kind != token.FLOAT {
			return 0, false
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(e.Value, "_", ""), 64)
		if err != nil {
			i, err := strconv.ParseInt(strings.ReplaceAll(e.Value, "_", ""), 0, 64)
			return float64(i), err == nil
		}
		return v, true
	case *ast.ParenExpr:
		return literalDuration(e.X, timePkg)
	case *ast.SelectorExpr:
		if id, ok := e.X.(*ast.Ident); ok && id.Name == timePkg {
			u, ok := units[e.Sel.Name]
			return float64(u), ok
		}
	case *ast.CallExpr:
		if isPkgFunc(e.Fun, timePkg, "Duration") && len(e.Args) == 1 {
			return literalDuration(e.Args[0], timePkg)
		}
	case *ast.BinaryExpr:
		x, ok1 := literalDuration(e.X, timePkg)
		y, ok2 := literalDuration(e.Y, timePkg)
		if !ok1 || !ok2 {
			return 0, false
		}
		switch e.Op {
		case token.ADD:
			return x + y, true
		case token.SUB:
			return x - y, true
		case token.MUL:
			return x * y, true
		case token.QUO:
			if y != 0 {
				return x / y, true
			}
		}
	}
	return 0, false
}

func TestLongSleeps(t *testing.T) {
	tests := []struct {
		name string
		body string // statements in a test function
		want []string
	}{
		{"short", `time.Sleep(100 * time.Millisecond); time.Sleep(20 * time.Millisecond); time.Sleep(time.Millisecond)`, nil},
		{"seconds", `time.Sleep(3 * time.Second)`, []string{"time.Sleep(3s) is longer than 100ms"}},
		{"milliseconds", `time.Sleep(1100 * time.Millisecond)`, []string{"time.Sleep(1.1s)"}},
		{"sum", `time.Sleep(time.Second + 50*time.Millisecond)`, []string{"time.Sleep(1.05s)"}},
		{"nanoseconds", `time.Sleep(2e9)`, []string{"time.Sleep(2s)"}},
		{"conversion", `time.Sleep(time.Duration(250) * time.Millisecond)`, []string{"time.Sleep(250ms)"}},
		{"until", `time.Sleep(time.Until(exp) + 50*time.Millisecond)`, []string{"time.Until"}},
		{"variable", `time.Sleep(d)`, nil},
		{"in a bubble", `synctest.Test(t, func(t *testing.T) { time.Sleep(2 * time.Second); time.Sleep(time.Until(exp)) })`, nil},
		{"after a bubble", `synctest.Test(t, func(t *testing.T) {}); time.Sleep(time.Minute)`, []string{"time.Sleep(1m0s)"}},
		{"other Sleep", `x.Sleep(time.Hour)`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "package p\nimport (\n\"testing\"\n\"testing/synctest\"\n\"time\"\n)\nfunc TestX(t *testing.T) {\n" + tt.body + "\n}\n"
			f, err := parser.ParseFile(token.NewFileSet(), "x_test.go", src, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := longSleeps(f)
			if len(got) != len(tt.want) {
				t.Fatalf("found %v, want %d findings %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].why, w) {
					t.Errorf("finding %d %q, want one containing %q", i, got[i].why, w)
				}
			}
		})
	}
	t.Run("renamed import", func(t *testing.T) {
		src := "package p\nimport clock \"time\"\nfunc f() { clock.Sleep(5 * clock.Second) }\n"
		f, err := parser.ParseFile(token.NewFileSet(), "x_test.go", src, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := longSleeps(f); len(got) != 1 {
			t.Fatalf("found %v, want the renamed time package's Sleep", got)
		}
	})
}
