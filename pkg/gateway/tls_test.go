package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/extproc"
)

// writeCertificate writes igw's self-signed certificate for the loopback
// addresses (extproc.SelfSignedCertificate) and its key as PEM files in
// dir.
func writeCertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	cert, err := extproc.SelfSignedCertificate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With spec.tls the API listener speaks TLS, and HTTP/2 by ALPN.
func TestGateway_TLSListenerServesHTTP2(t *testing.T) {
	cert, key := writeCertificate(t, t.TempDir())
	s, f := frontGateway(t, "  tls: {certFile: "+cert+", keyFile: "+key+"}\n")
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true} //nolint:gosec // a test certificate
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := c.Post("https://"+s.Addr()+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("m")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS == nil {
		t.Fatalf("%s %d (TLS %v): %s", resp.Proto, resp.StatusCode, resp.TLS != nil, b)
	}
	if f.hits.Load() != 1 {
		t.Errorf("the model server got %d requests, want 1", f.hits.Load())
	}
	// Plaintext is not served on a TLS listener.
	if r, err := newClient(t).Get("http://" + s.Addr() + "/v1/models"); err == nil && r.StatusCode == http.StatusOK {
		t.Error("a plaintext request was answered 200 on the TLS listener")
	}
}

// A bad certificate fails the configuration, naming the field.
func TestGateway_TLSSettingsAreCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertificate(t, dir)
	other, _ := writeCertificate(t, t.TempDir())
	for _, tc := range []struct{ spec, want string }{
		{"  tls: {certFile: " + cert + "}\n", "spec.tls"},
		{"  tls: {certFile: " + filepath.Join(dir, "missing.crt") + ", keyFile: " + key + "}\n", "spec.tls.certFile"},
		{"  tls: {certFile: " + other + ", keyFile: " + key + "}\n", "spec.tls"},
	} {
		_, err := testSchema.Parse("test.yaml", []byte(gatewayYAML+tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want one naming %s", tc.spec, err, tc.want)
		}
	}
}
