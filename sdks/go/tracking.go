package raceway

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Access is the kind of a state_change access.
type Access string

const (
	Read        Access = "read"
	Write       Access = "write"
	AtomicRead  Access = "atomic_read"
	AtomicWrite Access = "atomic_write"
	AtomicRMW   Access = "atomic_rmw"
)

// NoValue marks an absent old_value / new_value in StateChange.
var NoValue = noValue{}

type noValue struct{}

func name256(s string) string {
	s = truncateUTF8(s, 256)
	if s == "" {
		return "unnamed"
	}
	return s
}

// StateChange records a state_change event (variable names are global, e.g.
// "account:42"). Pass NoValue for an absent old or new value; nil is JSON null.
// Outside a Raceway context it does nothing.
func StateChange(ctx context.Context, variable string, access Access, oldValue, newValue any) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	if !t.exporting() {
		t.record(nil, nil, "")
		return
	}
	k := map[string]any{"type": "state_change", "variable": name256(variable), "access": string(access)}
	if _, absent := oldValue.(noValue); !absent {
		k["old_value"] = oldValue
	}
	if _, absent := newValue.(noValue); !absent {
		k["new_value"] = newValue
	}
	t.record(k, nil, callerLocation(2))
}

// TrackRead records a read of variable that observed value.
func TrackRead(ctx context.Context, variable string, value any) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	if !t.exporting() {
		t.record(nil, nil, "")
		return
	}
	t.record(map[string]any{"type": "state_change", "variable": name256(variable), "access": string(Read),
		"new_value": value}, nil, callerLocation(2))
}

// TrackWrite records a write of variable from oldValue to newValue.
func TrackWrite(ctx context.Context, variable string, oldValue, newValue any) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	if !t.exporting() {
		t.record(nil, nil, "")
		return
	}
	t.record(map[string]any{"type": "state_change", "variable": name256(variable), "access": string(Write),
		"old_value": oldValue, "new_value": newValue}, nil, callerLocation(2))
}

// TrackFunction runs fn, timing it, and records function_call (with duration_ns)
// when it returns. It returns fn's error.
func TrackFunction(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	loc := callerLocation(2)
	start := time.Now()
	err := fn(ctx)
	recordFunction(ctx, name, start, loc)
	return err
}

// StartFunction starts timing a function; the returned func records function_call:
//
//	defer raceway.StartFunction(ctx, "checkout")()
func StartFunction(ctx context.Context, name string) func() {
	loc := callerLocation(2)
	start := time.Now()
	var once sync.Once
	return func() { once.Do(func() { recordFunction(ctx, name, start, loc) }) }
}

func recordFunction(ctx context.Context, name string, start time.Time, loc string) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	d := uint64(time.Since(start))
	k := map[string]any{"type": "function_call", "function": name256(name)}
	if i := strings.LastIndexByte(name, '.'); i > 0 && i < len(name)-1 {
		k["module"] = name[:i]
	}
	t.record(k, &d, loc)
}

// RecordError records an error event (error_type = the Go type of err).
func RecordError(ctx context.Context, err error) {
	t := threadFrom(ctx)
	if t == nil || err == nil {
		return
	}
	if !t.exporting() {
		t.record(nil, nil, "")
		return
	}
	t.record(map[string]any{"type": "error", "error_type": name256(fmt.Sprintf("%T", err)), "message": err.Error()},
		nil, callerLocation(2))
}

// Custom records a custom event with optional JSON-serialisable data (nil = none).
func Custom(ctx context.Context, name string, data any) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	if !t.exporting() {
		t.record(nil, nil, "")
		return
	}
	k := map[string]any{"type": "custom", "name": name256(name)}
	if data != nil {
		k["data"] = data
	}
	t.record(k, nil, callerLocation(2))
}

// lockAcquired records lock_acquire after acquiring (locks_held includes the lock).
func lockAcquired(ctx context.Context, name, mode string, loc string) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	t.mu.Lock()
	if len(t.locks) < 64 {
		t.locks = append(t.locks, LockHeld{Lock: name, Mode: mode})
	}
	t.recordLocked(map[string]any{"type": "lock_acquire", "lock": name, "mode": mode}, nil, loc)
	t.mu.Unlock()
}

// lockReleasing records lock_release before releasing (locks_held still includes it).
func lockReleasing(ctx context.Context, name, mode string, loc string) {
	t := threadFrom(ctx)
	if t == nil {
		return
	}
	t.mu.Lock()
	t.recordLocked(map[string]any{"type": "lock_release", "lock": name, "mode": mode}, nil, loc)
	for i := len(t.locks) - 1; i >= 0; i-- {
		if t.locks[i].Lock == name && t.locks[i].Mode == mode {
			t.locks = append(t.locks[:i], t.locks[i+1:]...)
			break
		}
	}
	t.mu.Unlock()
}

// LockAcquired records that the current logical thread acquired the named lock
// (for locks that are not a raceway.Mutex). Pair it with LockReleasing.
func LockAcquired(ctx context.Context, lock string, mode string) {
	lockAcquired(ctx, name256(lock), mode, callerLocation(2))
}

// LockReleasing records that the named lock is about to be released.
func LockReleasing(ctx context.Context, lock string, mode string) {
	lockReleasing(ctx, name256(lock), mode, callerLocation(2))
}

// Mutex is a sync.Mutex that records lock_acquire / lock_release. Name it
// globally (e.g. "account:42"); the zero value uses "mutex@<address>".
type Mutex struct {
	Name string
	mu   sync.Mutex
}

func (m *Mutex) name() string {
	if m.Name != "" {
		return name256(m.Name)
	}
	return fmt.Sprintf("mutex@%p", m)
}

// Lock acquires the mutex and records lock_acquire on ctx's logical thread.
func (m *Mutex) Lock(ctx context.Context) {
	m.mu.Lock()
	lockAcquired(ctx, m.name(), ModeExclusive, callerLocation(2))
}

// TryLock tries to acquire the mutex; on success it records lock_acquire.
func (m *Mutex) TryLock(ctx context.Context) bool {
	if !m.mu.TryLock() {
		return false
	}
	lockAcquired(ctx, m.name(), ModeExclusive, callerLocation(2))
	return true
}

// Unlock records lock_release and releases the mutex.
func (m *Mutex) Unlock(ctx context.Context) {
	lockReleasing(ctx, m.name(), ModeExclusive, callerLocation(2))
	m.mu.Unlock()
}

// RWMutex is a sync.RWMutex that records lock events (shared for readers).
type RWMutex struct {
	Name string
	mu   sync.RWMutex
}

func (m *RWMutex) name() string {
	if m.Name != "" {
		return name256(m.Name)
	}
	return fmt.Sprintf("rwmutex@%p", m)
}

// Lock acquires the write lock.
func (m *RWMutex) Lock(ctx context.Context) {
	m.mu.Lock()
	lockAcquired(ctx, m.name(), ModeExclusive, callerLocation(2))
}

// Unlock releases the write lock.
func (m *RWMutex) Unlock(ctx context.Context) {
	lockReleasing(ctx, m.name(), ModeExclusive, callerLocation(2))
	m.mu.Unlock()
}

// RLock acquires a read lock.
func (m *RWMutex) RLock(ctx context.Context) {
	m.mu.RLock()
	lockAcquired(ctx, m.name(), ModeShared, callerLocation(2))
}

// RUnlock releases a read lock.
func (m *RWMutex) RUnlock(ctx context.Context) {
	lockReleasing(ctx, m.name(), ModeShared, callerLocation(2))
	m.mu.RUnlock()
}

// callerLocationOutsideHTTP returns the first caller frame outside net/http and
// this package's transport (the code that issued the HTTP request).
func callerLocationOutsideHTTP() string {
	var pcs [32]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		fn := f.Function
		if !strings.HasPrefix(fn, "net/http.") && !strings.HasPrefix(fn, "runtime.") &&
			!strings.Contains(fn, "raceway/sdks/go.(*transport)") {
			return f.File + ":" + strconv.Itoa(f.Line)
		}
		if !more {
			return ""
		}
	}
}
