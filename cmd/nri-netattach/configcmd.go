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
// also those whose default is empty (omitempty would hide them), in nested
// sections too.
func defaultConfigYAML() ([]byte, error) {
	c, err := config.Parse(nil)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(allFields(reflect.ValueOf(*c)))
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(data)
}

// allFields maps a struct's JSON field names to their values, nested
// structs expanded the same way. A type with its own JSON form (a
// Duration) is kept as it is.
func allFields(v reflect.Value) map[string]any {
	out := map[string]any{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := v.Field(i)
		_, custom := f.Interface().(json.Marshaler)
		switch {
		case f.Kind() == reflect.Struct && !custom:
			out[name] = allFields(f)
		case f.Kind() == reflect.Slice && f.IsNil():
			out[name] = reflect.MakeSlice(f.Type(), 0, 0).Interface() // [] rather than null
		default:
			out[name] = f.Interface()
		}
	}
	return out
}
