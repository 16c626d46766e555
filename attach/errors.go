package attach

import (
	"errors"
	"fmt"
)

// Error is a failure of one attachment: which network, which interface,
// and what went wrong. Its text is "network NET (interface IF): ...".
type Error struct {
	Network   string
	Interface string
	// What failed, e.g. "CNI ADD failed" or "timed out".
	What string
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("network %s (interface %s): %s: %v", e.Network, e.Interface, e.What, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorSubject returns the network and interface an error is about, if it is (or
// wraps) an *Error.
func ErrorSubject(err error) (network, iface string, ok bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Network, e.Interface, true
	}
	return "", "", false
}
