package nadimport

import (
	"errors"
	"strings"
)

// Live is a NAD converted for a node that watches the API server: either
// Data (a definition file, as Convert makes it) or, for an empty
// spec.config, FromDir with the NAD's Resource, meaning the definition is
// the node's file of the NAD's name, found when a pod needs it (as Multus
// reads it from its CNI directory).
type Live struct {
	Data     []byte
	FromDir  bool
	Resource string
	// Ignored are the NAD's Multus annotations other than the resource
	// one: Multus does not read them either.
	Ignored []string
}

// ConvertLive converts a NAD seen through the API: as Convert does, with
// the same refusals, except that an empty spec.config is not an error.
func ConvertLive(n NAD) (Live, error) {
	if strings.TrimSpace(n.Config) != "" {
		f, err := Convert(n, false)
		return Live{Data: f.Data, Ignored: f.Ignored}, err
	}
	resource, ignored, errs := checkMetadata(n)
	if err := errors.Join(errs...); err != nil {
		return Live{}, err
	}
	return Live{FromDir: true, Resource: resource, Ignored: ignored}, nil
}
