package raceway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func specDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "spec")
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

func eventSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		f, err := os.Open(filepath.Join(specDir(), "events.schema.json"))
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("https://raceway.dev/spec/events.schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile("https://raceway.dev/spec/events.schema.json")
	})
	if schemaErr != nil {
		t.Fatalf("schema: %v", schemaErr)
	}
	return schema
}

func validateBatch(t testing.TB, body []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("batch is not JSON: %v", err)
	}
	if err := eventSchema(t).Validate(inst); err != nil {
		t.Fatalf("batch does not validate against events.schema.json: %v\n%s", err, body)
	}
}

// wireEvent is an event as the backend receives it.
type wireEvent struct {
	ID           string            `json:"id"`
	TraceID      string            `json:"trace_id"`
	SpanID       string            `json:"span_id"`
	ParentSpanID *string           `json:"parent_span_id"`
	ThreadID     string            `json:"thread_id"`
	Seq          uint64            `json:"seq"`
	Service      string            `json:"service"`
	Instance     string            `json:"instance"`
	Timestamp    string            `json:"timestamp"`
	DurationNS   *uint64           `json:"duration_ns"`
	VectorClock  [][]any           `json:"vector_clock"`
	LocksHeld    []LockHeld        `json:"locks_held"`
	Location     string            `json:"location"`
	Tags         map[string]string `json:"tags"`
	Kind         map[string]any    `json:"kind"`
}

func (e wireEvent) Type() string { s, _ := e.Kind["type"].(string); return s }

func (e wireEvent) clockOf(key string) uint64 {
	for _, p := range e.VectorClock {
		if p[0].(string) == key {
			return uint64(p[1].(float64))
		}
	}
	return 0
}

// collector is a fake Raceway backend: it validates and stores every batch.
type collector struct {
	t       testing.TB
	mu      sync.Mutex
	events  []wireEvent
	batches int
	auth    []string
	srv     *httptest.Server
	// behaviour
	status  int           // answer with this status (0 = 200)
	delay   time.Duration // sleep before answering
	headers map[string]string
	// respond, when set, picks the status and headers of the n-th request (1-based)
	respond func(n int) (int, map[string]string)
	times   []time.Time
	sizes   []int
}

func newCollector(t testing.TB) *collector {
	c := &collector{t: t}
	c.srv = httptest.NewServer(http.HandlerFunc(c.handle))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.batches++
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	status, delay := c.status, c.delay
	hdrs := c.headers
	if c.respond != nil {
		status, hdrs = c.respond(c.batches)
	}
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range hdrs {
		w.Header().Set(k, v)
	}
	if status != 0 && status != 200 {
		w.WriteHeader(status)
		return
	}
	if r.URL.Path != "/v1/events" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		c.t.Errorf("unexpected request %s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	if len(body) >= 1<<20 {
		c.t.Errorf("batch body of %d bytes", len(body))
	}
	validateBatch(c.t, body)
	var batch struct {
		Events []wireEvent `json:"events"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		c.t.Errorf("batch: %v", err)
	}
	c.mu.Lock()
	c.sizes = append(c.sizes, len(batch.Events))
	c.events = append(c.events, batch.Events...)
	c.mu.Unlock()
	_, _ = io.WriteString(w, `{"accepted":0,"duplicates":0,"rejected":[]}`)
}

func (c *collector) set(f func(c *collector)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

func (c *collector) all() []wireEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireEvent(nil), c.events...)
}

func (c *collector) batchCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches
}

// byThread groups events by thread id, in seq order as sent.
func byThread(evs []wireEvent) map[string][]wireEvent {
	m := map[string][]wireEvent{}
	for _, e := range evs {
		m[e.ThreadID] = append(m[e.ThreadID], e)
	}
	return m
}
