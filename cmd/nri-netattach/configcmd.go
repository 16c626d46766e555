package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/nri-netattach/nri-netattach/config"
)

// configCmd is `nri-netattach config default`: the effective default
// configuration as YAML, every field written out (as `containerd config
// default` does), to start a configuration file from.
func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "default" {
		fmt.Fprintln(stderr, "usage: nri-netattach config default")
		return 2
	}
	out, err := defaultConfigYAML()
	if err != nil {
		fmt.Fprintln(stderr, "nri-netattach config default:", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

// defaultConfigYAML renders the defaulted configuration with every field,
// also those whose default is empty (omitempty would hide them).
func defaultConfigYAML() ([]byte, error) {
	c, err := config.Parse(nil)
	if err != nil {
		return nil, err
	}
	fields := map[string]json.RawMessage{}
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Slice && f.IsNil() {
			f = reflect.MakeSlice(f.Type(), 0, 0) // [] rather than null
		}
		raw, err := json.Marshal(f.Interface())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fields[name] = raw
	}
	data, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(data)
}
