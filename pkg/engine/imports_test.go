package engine_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The dependency rules of DESIGN.md ("Dependencies point downwards") that
// the compiler cannot enforce, checked on the sources with go/parser (no go
// tool at test time). Test files are exempt: a test may compose the whole
// schema or a real engine to exercise a package.

const module = "github.com/igw-dev/igw/"

// repoRoot is the module's root, two directories above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// goPackages maps each package directory under dir (as a module-relative
// path such as "pkg/gateway") to its non-test source files' igw imports
// (module-relative too), and records the packages that declare a
// configuration kind.
type goPackages struct {
	imports map[string][]string // package → igw packages it imports
	kinds   map[string]bool     // packages whose sources declare a config.Kind
}

func scan(t *testing.T, root string) goPackages {
	t.Helper()
	pkgs := goPackages{imports: map[string][]string{}, kinds: map[string]bool{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, "pkg"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if _, ok := pkgs.imports[pkg]; !ok {
			pkgs.imports[pkg] = nil
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if dep, ok := strings.CutPrefix(p, module); ok && !slices.Contains(pkgs.imports[pkg], dep) {
				pkgs.imports[pkg] = append(pkgs.imports[pkg], dep)
			}
		}
		if strings.Contains(string(src), "config.Kind{") {
			pkgs.kinds[pkg] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// under reports whether pkg is dir or one of its subpackages.
func under(pkg, dir string) bool {
	return pkg == dir || strings.HasPrefix(pkg, dir+"/")
}

func TestImports_DependenciesPointDownwards(t *testing.T) {
	pkgs := scan(t, repoRoot(t))

	// The modules that declare configuration kinds are found from their
	// sources, so a new one is covered without editing this test; these
	// must be among them, or the detection broke.
	for _, want := range []string{"pkg/discovery/static", "pkg/policy/auth", "pkg/policy/guard", "pkg/policy/quota", "pkg/gateway", "pkg/engine"} {
		if !pkgs.kinds[want] {
			t.Errorf("%s declares no configuration kind that this test can see", want)
		}
	}

	for _, pkg := range slices.Sorted(maps.Keys(pkgs.imports)) {
		for _, dep := range pkgs.imports[pkg] {
			// The data planes are wire adapters: they see the engine and
			// the Director, never a plugin, flow control, or another
			// module's configuration kinds.
			if under(pkg, "pkg/gateway") || under(pkg, "pkg/extproc") {
				switch {
				case under(dep, "pkg/scheduling/plugins"):
					t.Errorf("%s imports the scheduling plugin %s; a transport stays ignorant of plugins", pkg, dep)
				case under(dep, "pkg/flowcontrol"):
					t.Errorf("%s imports %s; flow control is the Director's", pkg, dep)
				case pkgs.kinds[dep] && dep != "pkg/engine" && !under(dep, "pkg/gateway"):
					t.Errorf("%s imports %s, which declares configuration kinds; a data plane sees the engine and the Director only", pkg, dep)
				}
			}
			// Kubernetes discovery feeds the datastore; it knows no data
			// plane.
			if under(pkg, "pkg/kube") && under(dep, "pkg/extproc") {
				t.Errorf("%s imports %s", pkg, dep)
			}
			// The loader knows no kind and no module: modules import it,
			// never the reverse.
			if under(pkg, "pkg/config") && !under(dep, "internal") {
				t.Errorf("%s imports %s; the configuration loader may depend on nothing of igw's but internal packages", pkg, dep)
			}
		}
	}
}
