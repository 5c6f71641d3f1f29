// Command render renders a Helm chart the way `helm template` does, for tests on machines without Helm.
//
// It uses the engine Helm itself uses: Go's text/template with sprig's TxtFuncMap (minus env and
// expandenv) and Helm's own functions (include, tpl, required, toYaml, fromYaml, toJson, fromJson,
// lookup), missingkey=zero with "<no value>" removed, partials (files starting with "_") parsed but
// not rendered, and the output split into documents and sorted in Helm's install order with
// "# Source:" headers. Values are read as Helm reads them (YAML through JSON, so numbers are
// float64) and coalesced like Helm's CoalesceValues: user maps merge into chart maps, user
// scalars and lists replace, a user null deletes the key. `lookup` finds nothing, as in
// `helm template`, unless --lookup-objects lists what the cluster holds (to model `helm upgrade`).
// It models one chart without subcharts and does not check values.schema.json
// (tests/chart/test_chart.py does, with jsonschema).
//
// Build offline from Debian's packages (golang-go, golang-github-masterminds-sprig-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render ./tests/chart/render
//
// Usage:
//
//	render --chart DIR [-f values.yaml]... [--name RELEASE] [--namespace NS]
//	       [--api-versions group/version[/Kind]]... [--kube-version 1.32.0] [--is-upgrade]
//	       [--lookup-objects cluster.yaml] [--notes]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	semver "github.com/Masterminds/semver" // v3 (Debian keeps it at this path)
	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

// ---------------------------------------------------------------- YAML as Helm reads and writes it

// yamlToJSONValue converts a value decoded by yaml.v2 into what encoding/json would produce from
// the equivalent JSON, which is what sigs.k8s.io/yaml (used by Helm) hands to templates.
func yamlToJSONValue(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, val := range t {
			var key string
			switch kk := k.(type) {
			case string:
				key = kk
			case int, int64, uint64, float64, bool:
				key = fmt.Sprint(kk)
			case nil:
				key = "null"
			default:
				return nil, fmt.Errorf("unsupported map key %v of type %T", k, k)
			}
			c, err := yamlToJSONValue(val)
			if err != nil {
				return nil, err
			}
			out[key] = c
		}
		return out, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			c, err := yamlToJSONValue(val)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return t, nil
	}
}

// readYAML decodes one YAML document into JSON-shaped Go values (maps of string, float64 numbers).
func readYAML(data []byte) (interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	conv, err := yamlToJSONValue(raw)
	if err != nil {
		return nil, err
	}
	j, err := json.Marshal(conv)
	if err != nil {
		return nil, err
	}
	var out interface{}
	if err := json.Unmarshal(j, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// toYAML is sigs.k8s.io/yaml.Marshal: JSON first, then YAML from the JSON (keys sorted), with
// Helm's trailing newline trimmed; errors render as "".
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	data, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	v, err := readYAML([]byte(str))
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	if mm, ok := v.(map[string]interface{}); ok {
		return mm
	}
	return m
}

func fromYAMLArray(str string) []interface{} {
	v, err := readYAML([]byte(str))
	if err != nil {
		return []interface{}{err.Error()}
	}
	if a, ok := v.([]interface{}); ok {
		return a
	}
	return []interface{}{}
}

func fromJSONArray(str string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// ---------------------------------------------------------------- values

// coalesce merges user values over chart defaults like Helm's CoalesceValues.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	if user == nil {
		user = map[string]interface{}{}
	}
	for key, def := range defaults {
		val, present := user[key]
		if !present {
			user[key] = deepCopy(def)
			continue
		}
		if val == nil {
			delete(user, key)
			continue
		}
		um, uok := val.(map[string]interface{})
		dm, dok := def.(map[string]interface{})
		if uok && dok {
			user[key] = coalesce(um, dm)
		} else if uok != dok && def != nil {
			fmt.Fprintf(os.Stderr, "coalesce.go: warning: cannot overwrite table with non table for %s (%v)\n", key, def)
		}
	}
	// A null in user values deletes the key even when the chart has no default for it.
	for key, val := range user {
		if val == nil {
			delete(user, key)
		}
	}
	return user
}

func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, val := range t {
			out[k] = deepCopy(val)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			out[i] = deepCopy(val)
		}
		return out
	default:
		return t
	}
}

// mergeUser folds successive -f files into one user map (later files win, maps merge), as Helm's
// `helm template -f a -f b` does before coalescing with the chart's values.
func mergeUser(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = mergeUser(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// ---------------------------------------------------------------- chart objects seen by templates

// Metadata holds the Chart.yaml fields templates read as .Chart.X (Helm's chart.Metadata).
type Metadata struct {
	Name         string
	Home         string
	Sources      []string
	Version      string
	Description  string
	Keywords     []string
	Icon         string
	APIVersion   string
	Condition    string
	Tags         string
	AppVersion   string
	Deprecated   bool
	Annotations  map[string]string
	KubeVersion  string
	Type         string
	Maintainers  []interface{}
	Dependencies []interface{}
}

// VersionSet is Helm's chartutil.VersionSet: .Capabilities.APIVersions.Has "group/version[/Kind]".
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// KubeVersion is Helm's chartutil.KubeVersion.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string { return kv.Version }

// GitVersion is the deprecated alias Helm keeps.
func (kv *KubeVersion) GitVersion() string { return kv.Version }

type HelmVersion struct {
	Version   string
	GitCommit string
}

type Capabilities struct {
	APIVersions VersionSet
	KubeVersion KubeVersion
	HelmVersion HelmVersion
}

// Files is Helm's .Files: the chart's files outside templates/ (crds/ included).
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }

func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := filepath.Match(pattern, name); ok {
			out[name] = data
		} else if matchDoubleStar(pattern, name) {
			out[name] = data
		}
	}
	return out
}

func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// matchDoubleStar handles "dir/**" like Helm's gobwas/glob with '/' separators, enough for "crds/**".
func matchDoubleStar(pattern, name string) bool {
	if strings.HasSuffix(pattern, "/**") {
		return strings.HasPrefix(name, strings.TrimSuffix(pattern, "**"))
	}
	return false
}

// ---------------------------------------------------------------- the engine

type renderer struct {
	t       *template.Template
	topAll  map[string]interface{}
	cluster []map[string]interface{} // objects `lookup` finds (--lookup-objects); none by default
}

// lookup is Helm's: one object by name, or {"items": [...]} for an empty name; an empty map when
// nothing matches. Namespace "" matches every namespace, as Helm's list across namespaces does.
func (r *renderer) lookup(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
	var items []interface{}
	for _, obj := range r.cluster {
		md, _ := obj["metadata"].(map[string]interface{})
		if obj["apiVersion"] != apiVersion || obj["kind"] != kind || md == nil {
			continue
		}
		if namespace != "" && md["namespace"] != namespace {
			continue
		}
		if name != "" {
			if md["name"] == name {
				return deepCopy(obj).(map[string]interface{}), nil
			}
			continue
		}
		items = append(items, deepCopy(obj))
	}
	if name != "" {
		return map[string]interface{}{}, nil
	}
	if items == nil {
		items = []interface{}{}
	}
	return map[string]interface{}{"apiVersion": apiVersion, "kind": kind + "List", "items": items}, nil
}

func (r *renderer) funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	includedNames := map[string]int{}
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromYamlArray"] = fromYAMLArray
	f["fromJsonArray"] = fromJSONArray
	f["include"] = func(name string, data interface{}) (string, error) {
		const recursionMaxNums = 1000
		if v, ok := includedNames[name]; ok {
			if v > recursionMaxNums {
				return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
			}
			includedNames[name]++
		} else {
			includedNames[name] = 1
		}
		var buf strings.Builder
		err := r.t.ExecuteTemplate(&buf, name, data)
		includedNames[name]--
		return buf.String(), err
	}
	f["tpl"] = func(tpl string, vals interface{}) (string, error) {
		t, err := r.t.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(tpl)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", tpl, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", tpl, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	// `helm template` has no cluster: lookup finds nothing unless --lookup-objects says what the
	// cluster holds (what `helm upgrade` would see).
	f["lookup"] = r.lookup
	return f
}

// installOrder is Helm's releaseutil.InstallOrder.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

var sep = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

type manifest struct {
	source  string
	content string
	kind    string
	name    string
}

func main() {
	var valueFiles, apiVersions multiFlag
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "ferry", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.32.0", "Kubernetes version for .Capabilities")
	isUpgrade := flag.Bool("is-upgrade", false, "render as an upgrade")
	notesOnly := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	lookupFile := flag.String("lookup-objects", "", "YAML file of objects `lookup` finds, as if in the cluster")
	flag.Var(&valueFiles, "f", "values file (repeatable; later files win)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("--chart is required"))
	}
	var cluster []map[string]interface{}
	if *lookupFile != "" {
		data, err := os.ReadFile(*lookupFile)
		if err != nil {
			fail(err)
		}
		for _, doc := range sep.Split(string(data), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			v, err := readYAML([]byte(doc))
			if err != nil {
				fail(fmt.Errorf("%s: %w", *lookupFile, err))
			}
			if m, ok := v.(map[string]interface{}); ok {
				cluster = append(cluster, m)
			}
		}
	}
	out, notes, err := render(*chartDir, valueFiles, *name, *namespace, *kubeVersion, *isUpgrade, apiVersions, cluster)
	if err != nil {
		fail(err)
	}
	if *notesOnly {
		out = notes
	}
	os.Stdout.WriteString(out)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func readMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	v, err := readYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: values must be a map", file)
	}
	return m, nil
}

func render(chartDir string, valueFiles []string, name, namespace, kubeVersion string, isUpgrade bool,
	extraAPIVersions []string, cluster []map[string]interface{}) (string, string, error) {
	chartYAML, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", "", err
	}
	var meta Metadata
	rawMeta, err := readYAML(chartYAML)
	if err != nil {
		return "", "", fmt.Errorf("Chart.yaml: %w", err)
	}
	j, _ := json.Marshal(rawMeta)
	if err := json.Unmarshal(j, &meta); err != nil {
		return "", "", fmt.Errorf("Chart.yaml: %w", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return "", "", errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}
	defaults, err := readMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", "", err
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		m, err := readMap(f)
		if err != nil {
			return "", "", err
		}
		user = mergeUser(user, m)
	}
	values := coalesce(user, defaults)

	templates := map[string]string{}
	files := Files{}
	err = filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == ".helmignore":
		case strings.HasPrefix(rel, "templates/"):
			templates[meta.Name+"/"+rel] = string(data)
		case strings.HasPrefix(rel, "charts/"):
			return fmt.Errorf("subcharts are not modelled (%s)", rel)
		default:
			files[rel] = data
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}

	kv := strings.TrimPrefix(kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return "", "", fmt.Errorf("bad --kube-version %q", kubeVersion)
	}
	// helm refuses a chart whose kubeVersion constraint the cluster does not meet.
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return "", "", fmt.Errorf("Chart.yaml: kubeVersion %q: %w", meta.KubeVersion, err)
		}
		v, err := semver.NewVersion(kv)
		if err != nil {
			return "", "", fmt.Errorf("bad --kube-version %q: %w", kubeVersion, err)
		}
		if !c.Check(v) {
			return "", "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes v%s",
				meta.KubeVersion, kv)
		}
	}
	apis := VersionSet{"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "admissionregistration.k8s.io/v1",
		"apiextensions.k8s.io/v1", "coordination.k8s.io/v1", "events.k8s.io/v1", "policy/v1"}
	apis = append(apis, extraAPIVersions...)
	top := map[string]interface{}{
		"Values": values,
		"Chart":  &meta,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "IsUpgrade": isUpgrade, "IsInstall": !isUpgrade,
			"Revision": 1, "Service": "Helm",
		},
		"Capabilities": &Capabilities{
			APIVersions: apis,
			KubeVersion: KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1]},
			HelmVersion: HelmVersion{Version: "v3.14.0"},
		},
		"Files":     files,
		"Subcharts": map[string]interface{}{},
	}

	r := &renderer{topAll: top, cluster: cluster}
	r.t = template.New("gotpl").Option("missingkey=zero")
	r.t.Funcs(r.funcMap())
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := r.t.New(n).Parse(templates[n]); err != nil {
			return "", "", err
		}
	}
	var manifests []manifest
	var notes string
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": n, "BasePath": meta.Name + "/templates"}
		var buf bytes.Buffer
		if err := r.t.ExecuteTemplate(&buf, n, vals); err != nil {
			return "", "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.HasSuffix(n, "NOTES.txt") {
			notes = text
			continue
		}
		if !strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml") && !strings.HasSuffix(n, ".tpl") {
			continue
		}
		for _, doc := range sep.Split(text, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head struct {
				Kind     string `yaml:"kind"`
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return "", "", fmt.Errorf("YAML parse error on %s: %w", n, err)
			}
			if head.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			manifests = append(manifests, manifest{source: n, content: strings.TrimSpace(doc), kind: head.Kind,
				name: head.Metadata.Name})
		}
	}
	rank := func(kind string) int {
		for i, k := range installOrder {
			if k == kind {
				return i
			}
		}
		return len(installOrder)
	}
	sort.SliceStable(manifests, func(i, j int) bool {
		ri, rj := rank(manifests[i].kind), rank(manifests[j].kind)
		if ri != rj {
			return ri < rj
		}
		if ri == len(installOrder) && manifests[i].kind != manifests[j].kind {
			return manifests[i].kind < manifests[j].kind
		}
		return false
	})
	var out strings.Builder
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	return out.String(), notes, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
