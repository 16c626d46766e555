package gate

import (
	"os"
	"syscall"
)

// watchDir signals on changed when a file in dir is written, renamed into
// it or removed (the daemon writes gate files by rename). Several events
// may come as one signal. Without a watch (inotify unavailable, or its
// limits reached) changed never fires and Wait falls back to polling.
func watchDir(dir string) (changed <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return ch, func() {}
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE|syscall.IN_DELETE|syscall.IN_CREATE); err != nil {
		syscall.Close(fd)
		return ch, func() {}
	}
	// Non-blocking, so the file's reads go through the runtime's poller
	// and Close ends the reader below.
	f := os.NewFile(uintptr(fd), "inotify")
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }
}
