package attach

import (
	"context"
	"sync"
)

// KeyedMutex serializes work per key (a sandbox ID): events, background
// attaches and the resync never act on the same sandbox at once, while
// different sandboxes proceed in parallel. Entries are freed when their
// last holder or waiter leaves. The zero value is ready to use.
type KeyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

// refMutex is a mutex as a one-slot channel, so that a wait can be
// abandoned when a deadline passes.
type refMutex struct {
	ch   chan struct{}
	refs int
}

func (k *KeyedMutex) acquire(key string) *refMutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{ch: make(chan struct{}, 1)}
		k.locks[key] = m
	}
	m.refs++
	return m
}

func (k *KeyedMutex) release(key string, m *refMutex) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m.refs--
	if m.refs == 0 {
		delete(k.locks, key)
	}
}

// Lock takes the lock of key and returns its unlock function.
func (k *KeyedMutex) Lock(key string) func() {
	unlock, _ := k.LockContext(context.Background(), key)
	return unlock
}

// LockContext takes the lock of key, or gives up when ctx ends first
// (with ctx's error).
func (k *KeyedMutex) LockContext(ctx context.Context, key string) (func(), error) {
	m := k.acquire(key)
	select {
	case m.ch <- struct{}{}:
	case <-ctx.Done():
		k.release(key, m)
		return nil, ctx.Err()
	}
	return k.unlocker(key, m), nil
}

// TryLock takes the lock of key if it is free.
func (k *KeyedMutex) TryLock(key string) (func(), bool) {
	m := k.acquire(key)
	select {
	case m.ch <- struct{}{}:
		return k.unlocker(key, m), true
	default:
		k.release(key, m)
		return nil, false
	}
}

func (k *KeyedMutex) unlocker(key string, m *refMutex) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-m.ch
			k.release(key, m)
		})
	}
}
