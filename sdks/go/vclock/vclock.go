// Package vclock implements the sparse vector clocks of the Raceway propagation
// specification (spec/PROPAGATION.md §4): an ordered map key -> counter with
// saturating ticks, element-wise maximum merges, a four-way comparison, and the
// bounding rule of §3.3 (never the own component; first TTL-stale ones; then
// the least recently advanced; ties: smallest counter, then smallest key).
//
// A Clock is not safe for concurrent use; every logical thread owns its own.
package vclock

import (
	"sort"
	"strings"
	"time"
)

// MaxCounter is the largest counter value (2^53-1); ticks saturate there.
const MaxCounter uint64 = 1<<53 - 1

// Entry is one [key, counter] pair of a clock on the wire.
type Entry struct {
	Key     string
	Counter uint64
}

// Order is the result of Compare.
type Order int

const (
	Equal Order = iota
	Before
	After
	Concurrent
)

func (o Order) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	default:
		return "concurrent"
	}
}

// component is an entry plus the local time it was last advanced.
type component struct {
	key      string
	counter  uint64
	advanced int64 // unix nanos of the last time this counter grew locally
}

// Clock is a sparse vector clock ordered by key (bytewise).
// The zero value is an empty clock ready to use.
type Clock struct {
	c []component
}

// New returns an empty clock.
func New() *Clock { return &Clock{} }

// FromEntries builds a clock from pairs (any order; duplicate keys take the maximum).
func FromEntries(entries []Entry) *Clock {
	c := &Clock{c: make([]component, 0, len(entries))}
	now := time.Now().UnixNano()
	for _, e := range entries {
		c.raise(e.Key, e.Counter, now)
	}
	return c
}

func (c *Clock) find(key string) (int, bool) {
	i := sort.Search(len(c.c), func(i int) bool { return c.c[i].key >= key })
	return i, i < len(c.c) && c.c[i].key == key
}

// raise sets key to max(current, n), recording the advance time when it grows.
func (c *Clock) raise(key string, n uint64, now int64) {
	if n > MaxCounter {
		n = MaxCounter
	}
	i, ok := c.find(key)
	if ok {
		if n > c.c[i].counter {
			c.c[i].counter = n
			c.c[i].advanced = now
		}
		return
	}
	c.c = append(c.c, component{})
	copy(c.c[i+1:], c.c[i:])
	c.c[i] = component{key: key, counter: n, advanced: now}
}

// Len returns the number of components.
func (c *Clock) Len() int { return len(c.c) }

// Get returns the counter of key (0 when missing).
func (c *Clock) Get(key string) uint64 {
	if i, ok := c.find(key); ok {
		return c.c[i].counter
	}
	return 0
}

// Tick increments key by one (saturating at MaxCounter) and returns the new value.
func (c *Clock) Tick(key string) uint64 {
	return c.TickAt(key, time.Now())
}

// TickAt is Tick with an explicit "now" for the advance bookkeeping.
func (c *Clock) TickAt(key string, now time.Time) uint64 {
	i, ok := c.find(key)
	if !ok {
		c.raise(key, 1, now.UnixNano())
		return 1
	}
	if c.c[i].counter < MaxCounter {
		c.c[i].counter++
	}
	c.c[i].advanced = now.UnixNano()
	return c.c[i].counter
}

// Merge raises every component to the maximum of both clocks.
func (c *Clock) Merge(entries []Entry) { c.MergeAt(entries, time.Now()) }

// MergeAt is Merge with an explicit "now".
func (c *Clock) MergeAt(entries []Entry, now time.Time) {
	n := now.UnixNano()
	for _, e := range entries {
		c.raise(e.Key, e.Counter, n)
	}
}

// MergeClock merges another clock into c.
func (c *Clock) MergeClock(o *Clock) {
	if o == nil {
		return
	}
	for _, oc := range o.c {
		i, ok := c.find(oc.key)
		switch {
		case ok && oc.counter > c.c[i].counter:
			c.c[i].counter = oc.counter
			if oc.advanced > c.c[i].advanced {
				c.c[i].advanced = oc.advanced
			}
		case !ok:
			c.c = append(c.c, component{})
			copy(c.c[i+1:], c.c[i:])
			c.c[i] = oc
		}
	}
}

// Clone returns an independent copy.
func (c *Clock) Clone() *Clock {
	if c == nil {
		return New()
	}
	return &Clock{c: append([]component(nil), c.c...)}
}

// Entries returns the pairs sorted by key.
func (c *Clock) Entries() []Entry {
	if c == nil {
		return []Entry{}
	}
	out := make([]Entry, len(c.c))
	for i, x := range c.c {
		out[i] = Entry{Key: x.key, Counter: x.counter}
	}
	return out
}

// Bound drops components until at most max remain, following PROPAGATION.md §3.3:
// the own component is never dropped; components not advanced for longer than ttl
// go first, then the least recently advanced (ties: smallest counter, then
// bytewise-smallest key). It returns the number of dropped components.
func (c *Clock) Bound(max int, own string, ttl time.Duration, now time.Time) int {
	if max <= 0 || len(c.c) <= max {
		return 0
	}
	excess := len(c.c) - max
	cutoff := now.Add(-ttl).UnixNano()
	idx := make([]int, 0, len(c.c))
	for i := range c.c {
		if c.c[i].key != own {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		x, y := c.c[idx[a]], c.c[idx[b]]
		xs, ys := ttl > 0 && x.advanced < cutoff, ttl > 0 && y.advanced < cutoff
		if xs != ys {
			return xs // stale ones first
		}
		if x.advanced != y.advanced {
			return x.advanced < y.advanced
		}
		if x.counter != y.counter {
			return x.counter < y.counter
		}
		return x.key < y.key
	})
	if excess > len(idx) {
		excess = len(idx)
	}
	drop := make(map[int]bool, excess)
	for _, i := range idx[:excess] {
		drop[i] = true
	}
	kept := c.c[:0]
	for i, x := range c.c {
		if !drop[i] {
			kept = append(kept, x)
		}
	}
	// clear the tail so dropped keys can be collected
	for i := len(kept); i < len(c.c); i++ {
		c.c[i] = component{}
	}
	c.c = kept
	return excess
}

// Compare compares two clocks given as entry lists (missing keys are 0).
func Compare(a, b []Entry) Order {
	am := toMap(a)
	bm := toMap(b)
	aLess, bLess := false, false // a has some component < b, b has some < a
	for k, av := range am {
		bv := bm[k]
		if av < bv {
			aLess = true
		} else if av > bv {
			bLess = true
		}
	}
	for k, bv := range bm {
		if _, ok := am[k]; !ok && bv > 0 {
			aLess = true
		}
	}
	switch {
	case !aLess && !bLess:
		return Equal
	case aLess && !bLess:
		return Before
	case bLess && !aLess:
		return After
	default:
		return Concurrent
	}
}

// CompareClocks compares two clocks.
func CompareClocks(a, b *Clock) Order { return Compare(a.Entries(), b.Entries()) }

// MergeEntries returns the element-wise maximum of two entry lists, sorted by key.
func MergeEntries(a, b []Entry) []Entry {
	c := FromEntries(a)
	c.Merge(b)
	return c.Entries()
}

// TickEntries returns a with key ticked once, sorted by key.
func TickEntries(a []Entry, key string) []Entry {
	c := FromEntries(a)
	c.Tick(key)
	return c.Entries()
}

// SortEntries sorts entries bytewise by key and merges duplicate keys by maximum.
func SortEntries(e []Entry) []Entry {
	sort.Slice(e, func(i, j int) bool { return strings.Compare(e[i].Key, e[j].Key) < 0 })
	out := e[:0]
	for _, x := range e {
		if n := len(out); n > 0 && out[n-1].Key == x.Key {
			if x.Counter > out[n-1].Counter {
				out[n-1].Counter = x.Counter
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

func toMap(e []Entry) map[string]uint64 {
	m := make(map[string]uint64, len(e))
	for _, x := range e {
		if x.Counter > m[x.Key] {
			m[x.Key] = x.Counter
		} else if _, ok := m[x.Key]; !ok {
			m[x.Key] = x.Counter
		}
	}
	return m
}
