package config

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	name63 := strings.Repeat("a", 63)
	name64 := strings.Repeat("a", 64)
	tests := []struct {
		name    string
		in      string
		want    Ref
		wantErr []string // substrings of the error; nil: success
	}{
		{name: "NAME", in: "macvlan-a", want: Ref{Name: "macvlan-a"}},
		{name: "NS/NAME", in: "team-a/macvlan", want: Ref{Namespace: "team-a", Name: "macvlan"}},
		{name: "digits only", in: "123", want: Ref{Name: "123"}},
		{name: "single character", in: "a", want: Ref{Name: "a"}},
		{name: "63-character name", in: name63, want: Ref{Name: name63}},
		{name: "63-character namespace", in: name63 + "/x", want: Ref{Namespace: name63, Name: "x"}},
		{name: "dot dot slash", in: "../x", wantErr: []string{`"../x"`, "namespace"}},
		{name: "dot dot alone", in: "..", wantErr: []string{`".."`}},
		{name: "dot", in: ".", wantErr: []string{`"."`}},
		{name: "three parts", in: "a/b/c", wantErr: []string{`"a/b/c"`, "name"}},
		{name: "absolute path", in: "/abs", wantErr: []string{`"/abs"`, "namespace", "empty"}},
		{name: "trailing slash", in: "ns/", wantErr: []string{`"ns/"`, "name", "empty"}},
		{name: "NUL byte", in: "a\x00b", wantErr: []string{`"a\x00b"`}},
		{name: "NUL byte in namespace", in: "n\x00s/a", wantErr: []string{`"n\x00s/a"`, "namespace"}},
		{name: "64-character name", in: name64, wantErr: []string{name64, "63", "64"}},
		{name: "64-character namespace", in: name64 + "/x", wantErr: []string{"namespace", "64"}},
		{name: "upper case", in: "Macvlan", wantErr: []string{`"Macvlan"`}},
		{name: "upper case namespace", in: "Team/x", wantErr: []string{`"Team/x"`, "namespace"}},
		{name: "empty", in: "", wantErr: []string{`""`, "empty"}},
		{name: "leading dash", in: "-x", wantErr: []string{`"-x"`, "start and end"}},
		{name: "trailing dash", in: "x-", wantErr: []string{`"x-"`, "start and end"}},
		{name: "underscore", in: "a_b", wantErr: []string{`"a_b"`}},
		{name: "dot inside", in: "a.b", wantErr: []string{`"a.b"`}},
		{name: "space", in: "a b", wantErr: []string{`"a b"`}},
		{name: "surrounding space", in: " a", wantErr: []string{`" a"`}},
		{name: "extension", in: "a.conflist", wantErr: []string{`"a.conflist"`}},
		{name: "non-ASCII", in: "réseau", wantErr: []string{"réseau"}},
		{name: "at sign", in: "a@net1", wantErr: []string{`"a@net1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRef(tt.in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseRef(%q): %v", tt.in, err)
				}
				if got != tt.want {
					t.Errorf("ParseRef(%q) = %#v, want %#v", tt.in, got, tt.want)
				}
				if got.String() != tt.in {
					t.Errorf("ParseRef(%q).String() = %q", tt.in, got.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseRef(%q) = %#v, want an error", tt.in, got)
			}
			if got != (Ref{}) {
				t.Errorf("ParseRef(%q) returned %#v with its error", tt.in, got)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("ParseRef(%q) error %q does not contain %q", tt.in, err, s)
				}
			}
		})
	}
}

func TestRefString(t *testing.T) {
	tests := []struct {
		ref  Ref
		want string
	}{
		{Ref{Name: "a"}, "a"},
		{Ref{Namespace: "ns", Name: "a"}, "ns/a"},
		{Ref{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.ref.String(); got != tt.want {
				t.Errorf("%#v.String() = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestValidateInterfaceName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
	}{
		{name: "eth0", in: "eth0"},
		{name: "net1", in: "net1"},
		{name: "15 characters", in: strings.Repeat("x", 15)},
		{name: "single character", in: "x"},
		{name: "upper case, dash, dot, underscore, at", in: "Eth-0.a_b@c"},
		{name: "16 characters", in: strings.Repeat("x", 16), wantErr: strings.Repeat("x", 16)},
		{name: "slash", in: "a/b", wantErr: `"a/b"`},
		{name: "colon", in: "a:b", wantErr: `"a:b"`},
		{name: "space", in: "a b", wantErr: `"a b"`},
		{name: "tab", in: "a\tb", wantErr: "invalid character"},
		{name: "newline", in: "a\n", wantErr: "invalid character"},
		{name: "NUL", in: "a\x00", wantErr: "invalid character"},
		{name: "DEL", in: "a\x7f", wantErr: "invalid character"},
		{name: "dot", in: ".", wantErr: `"."`},
		{name: "dot dot", in: "..", wantErr: `".."`},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "non-ASCII", in: "éth0", wantErr: "éth0"},
		{name: "non-breaking space", in: "a\u00a0b", wantErr: "invalid character"},
		{name: "short non-ASCII (12 bytes)", in: "ネットワ", wantErr: "ネットワ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateInterfaceName(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateInterfaceName(%q): %v", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateInterfaceName(%q) = nil, want an error", tt.in)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateInterfaceName(%q) error %q does not contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
