// ferry-kstatus computes the health of Kubernetes objects exactly as Flux and Argo CD do, with
// sigs.k8s.io/cli-utils/pkg/kstatus/status. It reads a `kubectl get -o json` document (a List
// or one object) on stdin and prints one line per object: `Kind/name STATUS message`.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-kstatus: reading stdin:", err)
		os.Exit(2)
	}
	var doc map[string]interface{}
	// utiljson keeps integers as int64, as the API machinery expects (generation, observedGeneration).
	if err := utiljson.Unmarshal(raw, &doc); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-kstatus: stdin is not a JSON object:", err)
		os.Exit(2)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, it := range items {
			if m, ok := it.(map[string]interface{}); ok {
				objects = append(objects, m)
			}
		}
	}
	for _, o := range objects {
		u := &unstructured.Unstructured{Object: o}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferry-kstatus: %s/%s: %v\n", u.GetKind(), u.GetName(), err)
			os.Exit(1)
		}
		fmt.Printf("%s/%s %s %s\n", u.GetKind(), u.GetName(), res.Status, res.Message)
	}
}
