// Package kubetest runs a real Kubernetes API server for tests: the
// kube-apiserver and etcd binaries of KUBEBUILDER_ASSETS (which `make
// envtest-assets` builds and `make unit` exports) through controller-runtime's
// envtest, with igw's CRDs (config/crd/bases) installed. One API server
// serves a whole test package: TestMain starts it with Main and the tests
// share it, each in its own namespace.
//
// Outside make, with KUBEBUILDER_ASSETS unset, the tests that need it skip
// with a message saying how to run them; with it set, a server that does not
// start fails the package.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/igw-dev/igw/pkg/gatewayapi"
)

// AssetsEnv is the environment variable naming the directory with
// kube-apiserver and etcd.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// Env is a running API server with igw's CRDs.
type Env struct {
	// Config reaches the server as an administrator.
	Config *rest.Config
	// Client is an administrator's client with igw's scheme.
	Client client.Client
	// Root is the module root (where config/ is).
	Root string

	env *envtest.Environment
}

// Main starts the API server, runs the package's tests with env set to it
// (nil when KUBEBUILDER_ASSETS is unset), stops it and returns the exit
// code for os.Exit.
func Main(m *testing.M, env **Env) int {
	if os.Getenv(AssetsEnv) == "" {
		return m.Run()
	}
	// controller-runtime and client-go (klog) keep process-wide loggers;
	// the test process shows their warnings and errors in igw's format.
	l := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctrllog.SetLogger(l)
	klog.SetLogger(l)
	e, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: stopping the API server: %v\n", err)
	}
	return code
}

// Require skips t when no API server runs (KUBEBUILDER_ASSETS unset) and
// returns env otherwise.
func Require(t testing.TB, env *Env) *Env {
	t.Helper()
	if env == nil {
		t.Skipf("%s is unset: this test needs a real kube-apiserver and etcd; run `make test`, or `make envtest-assets` and export %s=$PWD/bin/envtest", AssetsEnv, AssetsEnv)
	}
	return env
}

// Start runs kube-apiserver and etcd from KUBEBUILDER_ASSETS and installs
// the CRDs of config/crd/bases, config/crd/llm-d, config/crd/aigateway and
// config/crd/compat
// and Gateway API's standard CRDs (from the
// sigs.k8s.io/gateway-api module igw builds with, so the CRDs and the Go
// types are one version).
func Start() (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	gatewayCRDs, err := GatewayAPICRDs()
	if err != nil {
		return nil, err
	}
	te := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "config", "crd", "aigateway"),
			filepath.Join(root, "config", "crd", "llm-d"), filepath.Join(root, "config", "crd", "compat"), gatewayCRDs},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute, // two busy cores under -race
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s=%s: %w", AssetsEnv, os.Getenv(AssetsEnv), err)
	}
	scheme, err := gatewayapi.NewScheme()
	if err == nil {
		err = apiextensionsv1.AddToScheme(scheme) // WithoutCRDs manages CRDs
	}
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("scheme: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Env{Config: cfg, Client: c, Root: root, env: te}, nil
}

// Stop ends the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// Namespace creates a namespace named after the test (unique, DNS-safe)
// and returns its name. It is not deleted: the server goes away with the
// package, and an API server without a controller manager never finishes
// deleting a namespace anyway.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// Kubeconfig writes a kubeconfig for a user with this name and groups
// (for example the identity of a ServiceAccount, so that only its RBAC
// applies) into dir and returns its path.
func (e *Env) Kubeconfig(dir, user string, groups ...string) (string, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: groups}, e.Config)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of %s: %w", user, err)
	}
	path := filepath.Join(dir, strings.NewReplacer(":", "_", "/", "_").Replace(user)+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	return path, nil
}

// UserConfig is a rest.Config for a user with this name and groups.
func (e *Env) UserConfig(user string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: groups}, e.Config)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", user, err)
	}
	return u.Config(), nil
}

// ServiceAccountUser is the user name and groups the API server gives a
// ServiceAccount's token: what RBAC subjects of kind ServiceAccount match.
func ServiceAccountUser(namespace, name string) (string, []string) {
	return "system:serviceaccount:" + namespace + ":" + name, []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
}

// GatewayAPICRDs is the directory of Gateway API's standard-channel CRDs in
// the module cache: the module's zip carries them beside its Go types.
func GatewayAPICRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m sigs.k8s.io/gateway-api: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("sigs.k8s.io/gateway-api is not in the module cache: run go mod download")
	}
	return filepath.Join(dir, "config", "crd", "standard"), nil
}

// ModuleRoot is the directory of the main module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// Apply creates every object of a multi-document YAML manifest in
// namespace (as `kubectl create -n namespace -f` would: namespaced objects
// get it, cluster-scoped ones that already exist are left as they are, and "namespace: default" in the text, such as a
// RoleBinding subject's, is replaced), and returns the objects as created.
func (e *Env) Apply(ctx context.Context, manifest []byte, namespace string) ([]*unstructured.Unstructured, error) {
	text := strings.ReplaceAll(string(manifest), "namespace: default", "namespace: "+namespace)
	var out []*unstructured.Unstructured
	for i, doc := range strings.Split(text, "\n---") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return out, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		namespaced, err := e.Client.IsObjectNamespaced(u)
		if err != nil || namespaced {
			u.SetNamespace(namespace) // cluster-scoped kinds (GatewayClass, ClusterRole) keep none
		}
		if err := e.Client.Create(ctx, u); err != nil {
			if !namespaced && apierrors.IsAlreadyExists(err) {
				continue // shared by the package's tests: the first one made it
			}
			return out, fmt.Errorf("document %d (%s %s): %w", i+1, u.GetKind(), u.GetName(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

// WithoutCRDs deletes igw's CRDs, waits until the API server no longer
// serves them, runs f, and installs them again (waiting until they are
// established), so a test can check behaviour on a cluster without them.
// Other tests of the package must not run in parallel with it.
func (e *Env) WithoutCRDs(ctx context.Context, f func()) error {
	opts := &envtest.CRDInstallOptions{Paths: []string{filepath.Join(e.Root, "config", "crd", "bases")}, ErrorIfPathMissing: true}
	if err := envtest.ReadCRDFiles(opts); err != nil {
		return fmt.Errorf("reading CRDs: %w", err)
	}
	crds := opts.CRDs
	for _, crd := range crds {
		if err := e.Client.Delete(ctx, crd.DeepCopy()); err != nil {
			return fmt.Errorf("deleting CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		for {
			err := e.Client.Get(ctx, client.ObjectKey{Name: crd.Name}, crd.DeepCopy())
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("CRD %s still there: %w", crd.Name, ctx.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f()
	if _, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: opts.Paths, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("reinstalling CRDs: %w", err)
	}
	return nil
}
