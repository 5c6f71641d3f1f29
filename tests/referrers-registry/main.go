// A registry with the OCI 1.1 referrers API, for tests: go-containerregistry's registry package
// (the one `crane registry serve` runs) with its referrers support switched on, which crane's
// command does not do. Docker distribution 2.8 and v3 have no referrers API, so this is the peer
// on which Ferry's referrers client takes the API path rather than the sha256-<hex> tag schema.
//
// Usage: ferry-referrers-registry ADDRESS   (e.g. 127.0.0.1:5000); logs requests to stderr.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ferry-referrers-registry HOST:PORT")
		os.Exit(2)
	}
	handler := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(os.Stderr, "", log.LstdFlags)))
	server := &http.Server{Addr: os.Args[1], Handler: handler}
	log.Fatal(server.ListenAndServe())
}
