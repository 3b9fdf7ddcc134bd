package gateway_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// The Gateway kind, parsed as igw serve parses it.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema(gateway.Kind())

// TestParse_InvalidValues checks each kind's validation: the whole error
// message names the file, the document and the field.
func TestParse_InvalidValues(t *testing.T) {
	const gw = "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec:\n"

	tests := []struct {
		name string
		doc  string // the document under test; it is document 3
		want string // one line of the error, after "bad.yaml: document 3 "
	}{
		{"gateway address", gw + "  address: 8080\n",
			`(Gateway): spec.address: must be a string, not the number 8080 (quote it)`},
		{"gateway address without port", gw + "  address: localhost\n",
			`(Gateway): spec.address: must be host:port such as ":8080" or "127.0.0.1:8080", not "localhost"`},
		{"gateway same admin address", gw + "  address: \":80\"\n  adminAddress: \":80\"\n",
			`(Gateway): spec.adminAddress: must differ from spec.address (:80)`},
		{"gateway body size", gw + "  maxRequestBodySize: 0\n",
			`(Gateway): spec.maxRequestBodySize: must be positive, not 0`},
		{"gateway body size syntax", gw + "  maxRequestBodySize: lots\n",
			`(Gateway): spec.maxRequestBodySize: invalid quantity (such as 10Mi or 10485760):`},
		{"gateway zero buffered body bytes", gw + "  maxBufferedBodyBytes: 0\n",
			`(Gateway): spec.maxBufferedBodyBytes: must be positive, not 0`},
		{"gateway negative body rate", gw + "  minBodyRate: -1Ki\n",
			`(Gateway): spec.minBodyRate: must not be negative, not -1Ki`},
		{"gateway zero body idle", gw + "  timeouts: {bodyIdle: 0s}\n",
			`(Gateway): spec.timeouts.bodyIdle: must be positive, not 0s`},
		{"gateway negative body grace", gw + "  timeouts: {bodyGrace: -1s}\n",
			`(Gateway): spec.timeouts.bodyGrace: must not be negative, not -1s`},
		{"gateway zero read header", gw + "  timeouts: {readHeader: 0s}\n",
			`(Gateway): spec.timeouts.readHeader: must be positive, not 0s`},
		{"gateway negative request", gw + "  timeouts: {request: -1s}\n",
			`(Gateway): spec.timeouts.request: must not be negative, not -1s (0s means no limit)`},
		{"gateway duration without unit", gw + "  timeouts: {idle: 30}\n",
			`(Gateway): spec.timeouts.idle: must be a duration string with a unit such as "30s" or "5m", not the number 30`},
		{"gateway bad duration", gw + "  timeouts: {idle: soon}\n",
			`(Gateway): spec.timeouts.idle: invalid duration (a string such as "30s" or "5m"): time: invalid duration "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.Parse("bad.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, tc.doc))
			if err == nil {
				t.Fatal("Parse accepted the invalid document")
			}
			want := "bad.yaml: document 3 " + tc.want
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant a line starting with:\n%s", err, want)
			}
			var e *config.Error
			if !errors.As(err, &e) || e.File != "bad.yaml" || e.Document != 3 {
				t.Errorf("errors.As(*Error) = %+v", e)
			}
		})
	}
}
