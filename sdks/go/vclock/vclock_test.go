package vclock

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"testing/quick"
	"time"
)

func loadClockVectors(t *testing.T) []struct {
	Name     string          `json:"name"`
	Op       string          `json:"op"`
	A        [][]any         `json:"a"`
	B        [][]any         `json:"b"`
	Key      string          `json:"key"`
	Expected json.RawMessage `json:"expected"`
} {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "spec", "vectors", "vector_clock.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			Name     string          `json:"name"`
			Op       string          `json:"op"`
			A        [][]any         `json:"a"`
			B        [][]any         `json:"b"`
			Key      string          `json:"key"`
			Expected json.RawMessage `json:"expected"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	return f.Cases
}

func entries(p [][]any) []Entry {
	out := []Entry{}
	for _, x := range p {
		out = append(out, Entry{Key: x[0].(string), Counter: uint64(x[1].(float64))})
	}
	return out
}

func TestVectorsVectorClock(t *testing.T) {
	for _, c := range loadClockVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			switch c.Op {
			case "compare":
				var want string
				_ = json.Unmarshal(c.Expected, &want)
				if got := Compare(entries(c.A), entries(c.B)).String(); got != want {
					t.Fatalf("compare = %s, want %s", got, want)
				}
			case "merge", "tick":
				var want [][]any
				_ = json.Unmarshal(c.Expected, &want)
				var got []Entry
				if c.Op == "merge" {
					got = MergeEntries(entries(c.A), entries(c.B))
				} else {
					got = TickEntries(entries(c.A), c.Key)
				}
				if !reflect.DeepEqual(got, entries(want)) {
					t.Fatalf("%s = %v, want %v", c.Op, got, entries(want))
				}
			default:
				t.Fatalf("unknown op %q", c.Op)
			}
		})
	}
}

// smallClock is a random clock over a small key space so that orders are interesting.
type smallClock []Entry

func (smallClock) Generate(r *rand.Rand, size int) reflect.Value {
	keys := []string{"a", "b", "c", "d"}
	var e []Entry
	for _, k := range keys {
		if r.Intn(3) > 0 {
			e = append(e, Entry{Key: k, Counter: uint64(r.Intn(4))})
		}
	}
	if r.Intn(20) == 0 {
		e = append(e, Entry{Key: "m", Counter: MaxCounter - uint64(r.Intn(2))})
	}
	return reflect.ValueOf(smallClock(e))
}

var qcfg = &quick.Config{MaxCount: 2000}

func TestPropertyMergeCommutative(t *testing.T) {
	f := func(a, b smallClock) bool {
		return Compare(MergeEntries(a, b), MergeEntries(b, a)) == Equal
	}
	if err := quick.Check(f, qcfg); err != nil {
		t.Fatal(err)
	}
}

func TestPropertyMergeAssociative(t *testing.T) {
	f := func(a, b, c smallClock) bool {
		return Compare(MergeEntries(MergeEntries(a, b), c), MergeEntries(a, MergeEntries(b, c))) == Equal
	}
	if err := quick.Check(f, qcfg); err != nil {
		t.Fatal(err)
	}
}

func TestPropertyMergeIdempotent(t *testing.T) {
	f := func(a smallClock) bool { return Compare(MergeEntries(a, a), a) == Equal }
	if err := quick.Check(f, qcfg); err != nil {
		t.Fatal(err)
	}
}

func TestPropertyMergeDominates(t *testing.T) {
	f := func(a, b smallClock) bool {
		m := MergeEntries(a, b)
		oa, ob := Compare(a, m), Compare(b, m)
		return (oa == Before || oa == Equal) && (ob == Before || ob == Equal)
	}
	if err := quick.Check(f, qcfg); err != nil {
		t.Fatal(err)
	}
}

func TestPropertyHappensBeforeStrictPartialOrder(t *testing.T) {
	// irreflexive
	if err := quick.Check(func(a smallClock) bool { return Compare(a, a) != Before }, qcfg); err != nil {
		t.Fatal(err)
	}
	// asymmetric, and compare is antisymmetric in its answer
	asym := func(a, b smallClock) bool {
		ab, ba := Compare(a, b), Compare(b, a)
		if ab == Before && ba == Before {
			return false
		}
		switch ab {
		case Before:
			return ba == After
		case After:
			return ba == Before
		default:
			return ba == ab
		}
	}
	if err := quick.Check(asym, qcfg); err != nil {
		t.Fatal(err)
	}
	// transitive
	trans := func(a, b, c smallClock) bool {
		if Compare(a, b) == Before && Compare(b, c) == Before {
			return Compare(a, c) == Before
		}
		return true
	}
	if err := quick.Check(trans, &quick.Config{MaxCount: 20000}); err != nil {
		t.Fatal(err)
	}
	// a tick makes a strictly later clock
	tick := func(a smallClock, k uint8) bool {
		key := string(rune('a' + k%4))
		if FromEntries(a).Get(key) == MaxCounter {
			return true
		}
		return Compare(a, TickEntries(a, key)) == Before
	}
	if err := quick.Check(tick, qcfg); err != nil {
		t.Fatal(err)
	}
}

func TestSaturation(t *testing.T) {
	c := FromEntries([]Entry{{"a", MaxCounter}, {"b", MaxCounter + 10}})
	if c.Tick("a") != MaxCounter || c.Get("b") != MaxCounter {
		t.Fatal("counters must saturate at 2^53-1")
	}
}

func TestBoundDropOrder(t *testing.T) {
	now := time.Unix(10_000, 0)
	c := New()
	c.TickAt("own", now.Add(-time.Hour)) // oldest, but never dropped
	c.MergeAt([]Entry{{"stale", 100}}, now.Add(-20*time.Minute))
	c.MergeAt([]Entry{{"old-big", 9}, {"old-small", 1}}, now.Add(-5*time.Minute))
	c.MergeAt([]Entry{{"tie-b", 2}, {"tie-a", 2}}, now.Add(-time.Minute))
	c.MergeAt([]Entry{{"fresh", 1}}, now)
	if n := c.Bound(10, "own", 15*time.Minute, now); n != 0 {
		t.Fatalf("nothing to drop under the cap, dropped %d", n)
	}
	steps := []struct {
		max  int
		gone string
	}{{6, "stale"}, {5, "old-small"}, {4, "old-big"}, {3, "tie-a"}, {2, "tie-b"}, {1, "fresh"}}
	for _, s := range steps {
		c.Bound(s.max, "own", 15*time.Minute, now)
		if c.Len() != s.max {
			t.Fatalf("max %d: len %d", s.max, c.Len())
		}
		for _, e := range c.Entries() {
			if e.Key == s.gone {
				t.Fatalf("max %d: %s should have been dropped: %v", s.max, s.gone, c.Entries())
			}
		}
	}
	if c.Bound(0, "own", time.Minute, now); c.Get("own") != 1 {
		t.Fatal("own component must survive")
	}
	c.MergeAt([]Entry{{"x", 1}}, now)
	c.Bound(1, "own", time.Minute, now)
	if c.Len() != 1 || c.Get("own") != 1 {
		t.Fatalf("own component must never be dropped: %v", c.Entries())
	}
}

func TestCloneIsIndependent(t *testing.T) {
	a := FromEntries([]Entry{{"a", 1}})
	b := a.Clone()
	b.Tick("a")
	b.Tick("z")
	if a.Get("a") != 1 || a.Len() != 1 {
		t.Fatal("clone shares state")
	}
	a.MergeClock(b)
	if a.Get("a") != 2 || a.Get("z") != 1 {
		t.Fatalf("merge clock: %v", a.Entries())
	}
}
