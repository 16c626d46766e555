// Package nadimport converts Multus NetworkAttachmentDefinitions, as
// `kubectl get network-attachment-definitions -A -o json` prints them, into
// nri-netattach network definition files (one per NAD, under NAMESPACE/ unless global), and refuses every
// one it cannot convert faithfully.
package nadimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/nri-netattach/nri-netattach/config"
)

const (
	// APIVersion and Kind of the objects converted.
	APIVersion = "k8s.cni.cncf.io/v1"
	Kind       = "NetworkAttachmentDefinition"
	// ResourceNameAnnotation is Multus's device-plugin resource annotation
	// on a NAD; it becomes the conflist's config.ResourceNameKey.
	ResourceNameAnnotation = "k8s.v1.cni.cncf.io/resourceName"
)

// multusPrefixes are the annotation prefixes of Multus and the NAD API:
// Multus reads none of them on a NAD but ResourceNameAnnotation, so the
// others are converted with a warning.
var multusPrefixes = []string{"k8s.v1.cni.cncf.io/", "k8s.cni.cncf.io/"}

// NAD is what the import reads of a NetworkAttachmentDefinition.
type NAD struct {
	APIVersion  string
	Kind        string
	Namespace   string
	Name        string
	Annotations map[string]string
	// Config is spec.config: a CNI conflist or a single plugin config.
	Config string

	item int   // position in the List plus one, or 0
	err  error // the item could not be decoded
}

// ID names the NAD in problem lines: NAMESPACE/NAME, or items[N] when
// the object lacks either.
func (n NAD) ID() string {
	if n.Namespace != "" && n.Name != "" {
		return n.Namespace + "/" + n.Name
	}
	if n.item > 0 {
		return fmt.Sprintf("items[%d]", n.item-1)
	}
	return "NetworkAttachmentDefinition"
}

type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Config string `json:"config"`
	} `json:"spec"`
}

// Decode reads kubectl's JSON output: a List (or a
// NetworkAttachmentDefinitionList) of NADs, or one NAD. An item that does
// not decode is kept, and Convert refuses it.
func Decode(data []byte) ([]NAD, error) {
	var top struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object in JSON (use kubectl get ... -o json): %w", err)
	}
	switch top.Kind {
	case Kind:
		return []NAD{decodeItem(data, 0)}, nil
	case "List", Kind + "List":
	default:
		return nil, fmt.Errorf("kind %q: want a List of %ss or one %s", top.Kind, Kind, Kind)
	}
	nads := make([]NAD, 0, len(top.Items))
	for i, raw := range top.Items {
		nads = append(nads, decodeItem(raw, i+1))
	}
	return nads, nil
}

// decodeItem decodes one object; item is its position in the List plus
// one, or 0.
func decodeItem(raw []byte, item int) NAD {
	var o object
	err := json.Unmarshal(raw, &o)
	n := toNAD(o)
	n.item = item
	if err != nil {
		n.err = fmt.Errorf("cannot decode the object: %w", err)
	}
	return n
}

func toNAD(o object) NAD {
	return NAD{
		APIVersion:  o.APIVersion,
		Kind:        o.Kind,
		Namespace:   o.Metadata.Namespace,
		Name:        o.Metadata.Name,
		Annotations: o.Metadata.Annotations,
		Config:      o.Spec.Config,
	}
}

// errEmptyConfig: a NAD without spec.config makes Multus read the network
// from a file of the same name in its CNI directory on the node.
var errEmptyConfig = errors.New("spec.config is empty: Multus reads it from a file on the node; copy that file instead")

// Convert turns one NAD into the contents of its definition file: a
// conflist with every field of spec.config, plus config.ResourceNameKey
// from the resource annotation. global makes it a global network. The
// error joins every problem found (errors.Join), each worth one line.
func Convert(n NAD, global bool) (File, error) {
	if n.err != nil {
		return File{}, n.err
	}
	if n.Kind != Kind || n.APIVersion != APIVersion {
		return File{}, fmt.Errorf("apiVersion %q, kind %q: not a %s %s", n.APIVersion, n.Kind, APIVersion, Kind)
	}
	resource, ignored, errs := checkMetadata(n)
	var data []byte
	var err error
	if strings.TrimSpace(n.Config) == "" {
		errs = append(errs, errEmptyConfig)
	} else if data, err = build([]byte(n.Config), n.Name, resource); err != nil {
		errs = append(errs, err)
	} else if _, err := config.ParseDefinition(data, "spec.config", nil); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return File{}, err
	}
	f := File{NAD: n.ID(), Ref: config.Ref{Namespace: n.Namespace, Name: n.Name}, Data: data, Ignored: ignored}
	if global {
		f.Ref.Namespace = ""
	}
	return f, nil
}

// checkLabel applies the rule config.ParseRef applies to names, without
// its "invalid network reference" wrapping.
func checkLabel(s string) error {
	if _, err := config.ParseRef(s); err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			return inner
		}
		return err
	}
	return nil
}

// resourceFrom returns the resource annotation, and the other Multus
// annotations, which Multus does not read either.
func resourceFrom(annotations map[string]string) (string, []string, error) {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	var ignored []string
	for _, k := range keys {
		if k == ResourceNameAnnotation {
			if strings.TrimSpace(annotations[k]) == "" {
				errs = append(errs, fmt.Errorf("annotation %s is empty", k))
			}
			continue
		}
		for _, p := range multusPrefixes {
			if strings.HasPrefix(k, p) {
				ignored = append(ignored, k)
				break
			}
		}
	}
	return annotations[ResourceNameAnnotation], ignored, errors.Join(errs...)
}

// build makes the conflist: a single plugin config becomes
// {"cniVersion","name","plugins":[the config minus those two]}, the way
// libcni itself lists it. Values are copied as raw JSON, so numbers and
// strings survive byte for byte, and keys keep their order.
func build(cfg []byte, nadName, resource string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &top); err != nil || top == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, fmt.Errorf("spec.config: not a JSON object: %w", err)
	}
	out, err := parseMembers(cfg)
	if err != nil {
		return nil, fmt.Errorf("spec.config: %w", err)
	}
	// A config without a name is named after the NAD, as Multus does.
	var name string
	if raw, ok := top["name"]; !ok || string(raw) == "null" || string(raw) == `""` {
		named, err := marshal(nadName)
		if err != nil {
			return nil, err
		}
		out = out.set("name", named)
	} else if err := json.Unmarshal(raw, &name); err != nil {
		return nil, fmt.Errorf("spec.config: name: must be a string, got %s", raw)
	}
	if _, isList := top["plugins"]; !isList {
		var list, plugin members
		for _, m := range out {
			if m.key == "cniVersion" || m.key == "name" {
				list = list.set(m.key, m.value)
			} else {
				plugin = plugin.set(m.key, m.value)
			}
		}
		out = list.set("plugins", json.RawMessage("["+string(plugin.encode())+"]"))
	}
	key := config.ResourceNameKey
	existing, has := out.get(key) // list level: in a single config it went to the plugin
	switch {
	case resource != "":
		want, err := marshal(resource)
		if err != nil {
			return nil, err
		}
		if has && !jsonEqual(existing, want) {
			return nil, fmt.Errorf("spec.config: %s: %s differs from annotation %s %q", key, existing, ResourceNameAnnotation, resource)
		}
		out = out.set(key, want)
	case has:
		return nil, fmt.Errorf("spec.config: %s: Multus ignores this key but nri-netattach would allocate devices from it; set annotation %s instead, or remove the key", key, ResourceNameAnnotation)
	}
	var compact, indented bytes.Buffer
	if err := json.Compact(&compact, out.encode()); err != nil {
		return nil, err
	}
	if err := json.Indent(&indented, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	indented.WriteByte('\n')
	return indented.Bytes(), nil
}

// member is one key of a JSON object and its raw value.
type member struct {
	key   string
	value json.RawMessage
}

// members is a JSON object in document order. A repeated key keeps its
// first place and its last value, which is what encoding/json (and so
// libcni) reads.
type members []member

// parseMembers splits a JSON object, already known to be valid.
func parseMembers(data []byte) (members, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var ms members
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("unexpected %v", t)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		ms = ms.set(key, v)
	}
	return ms, nil
}

func (ms members) get(key string) (json.RawMessage, bool) {
	for _, m := range ms {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

func (ms members) set(key string, v json.RawMessage) members {
	for i := range ms {
		if ms[i].key == key {
			ms[i].value = v
			return ms
		}
	}
	return append(ms, member{key, v})
}

func (ms members) encode() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshal(m.key) // a string always encodes
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// marshal is json.Marshal without HTML escaping, which would turn "<" in
// a value into "\u003c".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// jsonEqual compares two JSON documents as values.
func jsonEqual(a, b []byte) bool {
	va, erra := decodeGeneric(a)
	vb, errb := decodeGeneric(b)
	return erra == nil && errb == nil && reflect.DeepEqual(va, vb)
}

func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// checkMetadata checks a NAD's namespace and name and reads its resource
// annotation: what every conversion needs, whatever its spec.config.
func checkMetadata(n NAD) (resource string, ignored []string, errs []error) {
	if err := checkLabel(n.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("metadata.namespace: %w", err))
	}
	if err := checkLabel(n.Name); err != nil {
		errs = append(errs, fmt.Errorf("metadata.name: %w", err))
	}
	resource, ignored, err := resourceFrom(n.Annotations)
	return resource, ignored, append(errs, err)
}
