package config

import (
	"fmt"
	"strings"
)

// Ref names a network definition: NAME (the pod's namespace first, then
// global) or NAMESPACE/NAME.
type Ref struct {
	Namespace string
	Name      string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

// ParseRef parses "NAME" or "NAMESPACE/NAME"; both parts must be DNS-1123
// labels, which rules out "..", "/", NUL bytes and absolute paths.
func ParseRef(s string) (Ref, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = "", s
	}
	r := Ref{Namespace: ns, Name: name}
	if found {
		if err := validateDNSLabel(ns); err != nil {
			return Ref{}, fmt.Errorf("invalid network reference %q: namespace: %w", s, err)
		}
	}
	if err := validateDNSLabel(name); err != nil {
		return Ref{}, fmt.Errorf("invalid network reference %q: name: %w", s, err)
	}
	return r, nil
}

// validateDNSLabel checks an RFC 1123 label: 1 to 63 lower-case
// alphanumerics or '-', starting and ending with an alphanumeric.
func validateDNSLabel(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 63 {
		return fmt.Errorf("must be at most 63 characters, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && c != '-' {
			return fmt.Errorf("%q is not a DNS-1123 label (lower-case letters, digits and '-' only)", s)
		}
		if !alnum && (i == 0 || i == len(s)-1) {
			return fmt.Errorf("%q is not a DNS-1123 label (must start and end with a letter or digit)", s)
		}
	}
	return nil
}

// ValidateInterfaceName checks a Linux interface name: 1 to 15 bytes, no
// '/', ':', whitespace or control characters, and not "." or "..".
func ValidateInterfaceName(s string) error {
	if s == "" {
		return fmt.Errorf("interface name must not be empty")
	}
	if len(s) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 characters", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("interface name %q is not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '/' || c == ':' || c >= 0x7f {
			return fmt.Errorf("interface name %q contains an invalid character %q", s, c)
		}
	}
	return nil
}
