//go:build !linux

package gate

// watchDir is inotify's on Linux; elsewhere Wait polls.
func watchDir(string) (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
