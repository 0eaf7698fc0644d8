package raceway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

const (
	upTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	upParent = "00f067aa0ba902b7"
)

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	return c
}

func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func upstreamClock(t *testing.T, spanID string) string {
	t.Helper()
	tid, _ := propagation.ParseTraceID(upTrace)
	sid, _ := propagation.ParseSpanID(spanID)
	pid, _ := propagation.ParseSpanID("a3ce929d0e0e4736")
	h, err := propagation.EncodeClock(&propagation.ClockPayload{TraceID: tid, SpanID: sid, ParentSpanID: pid,
		Service: "gateway", Instance: "gw-1", Clock: []vclock.Entry{{Key: "gateway#gw-1", Counter: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkThreads asserts seq is 0,1,2,... on every thread and timestamps are RFC 3339 with nanoseconds.
func checkThreads(t *testing.T, evs []wireEvent) map[string][]wireEvent {
	t.Helper()
	ts := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$`)
	threads := byThread(evs)
	for id, list := range threads {
		sort.Slice(list, func(i, j int) bool { return list[i].Seq < list[j].Seq })
		for i, e := range list {
			if e.Seq != uint64(i) {
				t.Fatalf("thread %s: seq %d at position %d", id, e.Seq, i)
			}
			if !ts.MatchString(e.Timestamp) {
				t.Fatalf("timestamp %q", e.Timestamp)
			}
			if i > 0 && vclock.Compare(entriesOf(list[i-1]), entriesOf(e)) != vclock.Before {
				t.Fatalf("thread %s: clock of seq %d does not follow seq %d", id, e.Seq, list[i-1].Seq)
			}
		}
		threads[id] = list
	}
	return threads
}

func entriesOf(e wireEvent) []vclock.Entry {
	var out []vclock.Entry
	for _, p := range e.VectorClock {
		out = append(out, vclock.Entry{Key: p[0].(string), Counter: uint64(p[1].(float64))})
	}
	return out
}

func types(list []wireEvent) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.Type())
	}
	return out
}

// Two services over real loopback: a client call into A, A forks a goroutine,
// calls B with the SDK transport, B tracks state; events are captured by a
// fake backend and validated against events.schema.json.
func TestEndToEndLoopback(t *testing.T) {
	col := newCollector(t)
	cfgB := Config{ServiceName: "svc-b", InstanceID: "b-1", Endpoint: col.srv.URL, APIKey: "secret", FlushInterval: 20 * time.Millisecond}
	cB := newTestClient(t, cfgB)
	muxB := http.NewServeMux()
	var bSeen SpanContext
	muxB.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		bSeen, _ = FromContext(r.Context())
		StateChange(r.Context(), "item:"+r.PathValue("id"), Write, 1, 2)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})
	srvB := httptest.NewServer(cB.Middleware(muxB))
	defer srvB.Close()

	cA := newTestClient(t, Config{ServiceName: "svc-a", InstanceID: "a-1", Endpoint: col.srv.URL, FlushInterval: 20 * time.Millisecond})
	hc := cA.HTTPClient()
	var aSeen SpanContext
	var bHeaders http.Header
	muxA := http.NewServeMux()
	muxA.Handle("GET /checkout", cA.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		wait := Go(ctx, func(ctx context.Context) {
			TrackRead(ctx, "cart:1", 3)
		})
		wait()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srvB.URL+"/items/42?x=1", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("call B: %v", err)
			return
		}
		bHeaders = resp.Header
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		aSeen, _ = FromContext(ctx)
		w.WriteHeader(http.StatusCreated)
	})))
	srvA := httptest.NewServer(muxA)
	defer srvA.Close()

	req, _ := http.NewRequest(http.MethodGet, srvA.URL+"/checkout", nil)
	req.Header.Set("traceparent", "00-"+upTrace+"-"+upParent+"-01")
	req.Header.Set("tracestate", "rojo=1,raceway=1111111111111111")
	req.Header.Set("raceway-clock", upstreamClock(t, upParent))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// the response clock of A
	p, kind := propagation.DecodeClock(resp.Header.Get("raceway-clock"))
	if kind != "" {
		t.Fatalf("A's response clock: %s", kind)
	}
	if p.TraceID.String() != upTrace || p.SpanID.String() != aSeen.SpanID || p.ParentSpanID.String() != upParent ||
		p.Service != "svc-a" {
		t.Fatalf("A's response clock payload %+v", p)
	}
	// A continued the trace with a new span and merged the upstream clock
	if aSeen.TraceID != upTrace || aSeen.SpanID == upParent || aSeen.ParentSpanID != upParent ||
		aSeen.ClockStatus != propagation.ClockStatusOK {
		t.Fatalf("A context %+v", aSeen)
	}
	// B's view: same trace, its parent is A's outbound call, clock ok
	if bSeen.TraceID != upTrace || bSeen.ClockStatus != propagation.ClockStatusOK || bSeen.ParentSpanID == aSeen.SpanID {
		t.Fatalf("B context %+v", bSeen)
	}
	if !hasKey(aSeen.Clock, "svc-b#b-1") || !hasKey(aSeen.Clock, "gateway#gw-1") {
		t.Fatalf("A did not merge B's response clock: %v", aSeen.Clock)
	}
	if _, k := propagation.DecodeClock(bHeaders.Get("raceway-clock")); k != "" {
		t.Fatalf("B's response clock: %s", k)
	}

	flush(t, cA)
	flush(t, cB)
	evs := col.all()
	threads := checkThreads(t, evs)

	aMain := threads[aSeen.SpanID]
	// a server request records exactly span_start and span_end (no http_request / http_response)
	wantA := []string{"span_start", "async_spawn", "async_await", "outbound_call", "outbound_response", "span_end"}
	if got := types(aMain); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Fatalf("A main thread kinds %v, want %v", got, wantA)
	}
	child := threads[aSeen.SpanID+".1"]
	if len(child) != 1 || child[0].Type() != "state_change" || child[0].Kind["access"] != "read" {
		t.Fatalf("child thread %v", types(child))
	}
	if aMain[1].Kind["child_thread_id"] != aSeen.SpanID+".1" || aMain[2].Kind["child_thread_id"] != aSeen.SpanID+".1" {
		t.Fatal("spawn/await child ids")
	}
	// fork/join edges are reflected by the clocks
	if vclock.Compare(entriesOf(aMain[1]), entriesOf(child[0])) != vclock.Before ||
		vclock.Compare(entriesOf(child[0]), entriesOf(aMain[2])) != vclock.Before {
		t.Fatal("fork/join clocks")
	}
	ss := aMain[0]
	if ss.Kind["operation"] != "GET /checkout" || ss.Kind["span_kind"] != "server" || *ss.ParentSpanID != upParent ||
		ss.TraceID != "4bf92f35-77b3-4da6-a3ce-929d0e0e4736" {
		t.Fatalf("span_start %+v", ss)
	}
	if h, _ := ss.Kind["http"].(map[string]any); h["method"] != "GET" || h["route"] != "/checkout" || h["target"] != "/checkout" {
		t.Fatalf("A span_start http %v", ss.Kind["http"])
	}
	up := ss.Kind["upstream"].(map[string]any)
	if up["traceparent"] != "valid" || up["clock"] != "ok" {
		t.Fatalf("upstream %v", up)
	}
	if ss.clockOf("gateway#gw-1") != 7 || ss.clockOf("svc-a#a-1") != 1 {
		t.Fatalf("span_start clock %v", ss.VectorClock)
	}
	call, ret := aMain[3], aMain[4]
	childSpan := call.Kind["child_span_id"].(string)
	if call.Kind["protocol"] != "http" || call.Kind["method"] != "GET" || !strings.HasSuffix(call.Kind["url"].(string), "/items/42?x=1") {
		t.Fatalf("outbound_call %v", call.Kind)
	}
	if bSeen.ParentSpanID != childSpan || bSeen.UpstreamParentID != childSpan {
		t.Fatalf("B parent %s, want A's child span %s", bSeen.ParentSpanID, childSpan)
	}
	callee := ret.Kind["callee"].(map[string]any)
	if ret.Kind["child_span_id"] != childSpan || ret.Kind["status"].(float64) != 200 || callee["span_id"] != bSeen.SpanID ||
		callee["service"] != "svc-b" || callee["instance"] != "b-1" {
		t.Fatalf("outbound_response %v", ret.Kind)
	}
	if !strings.Contains(call.Location, "raceway_test.go:") {
		t.Fatalf("outbound_call location %q", call.Location)
	}
	last := aMain[len(aMain)-1]
	if code, _ := last.Kind["status_code"].(float64); code != 201 || last.Kind["error"] != false ||
		last.Kind["operation"] != "GET /checkout" || last.DurationNS == nil || *last.DurationNS == 0 {
		t.Fatalf("span_end %v", last.Kind)
	}
	// span_end is recorded when the headers go out: the response clock A sent is span_end's clock
	if vclock.Compare(p.Clock, entriesOf(last)) != vclock.Equal {
		t.Fatalf("A's response clock %v is not span_end's clock %v", p.Clock, last.VectorClock)
	}

	bMain := threads[bSeen.SpanID]
	if got := types(bMain); strings.Join(got, ",") != "span_start,state_change,span_end" {
		t.Fatalf("B kinds %v", got)
	}
	bss := bMain[0]
	if bss.Kind["operation"] != "GET /items/{id}" || *bss.ParentSpanID != childSpan {
		t.Fatalf("B span_start %v", bss.Kind)
	}
	httpInfo := bss.Kind["http"].(map[string]any)
	if httpInfo["route"] != "/items/{id}" || httpInfo["target"] != "/items/42?x=1" || httpInfo["method"] != "GET" {
		t.Fatalf("B http %v", httpInfo)
	}
	bEnd := bMain[len(bMain)-1]
	if code, _ := bEnd.Kind["status_code"].(float64); code != 200 || bEnd.Kind["error"] != false ||
		bEnd.DurationNS == nil || *bEnd.DurationNS == 0 {
		t.Fatalf("B span_end %v", bEnd.Kind)
	}
	// happens-before across services: A's outbound_call -> B's span_start -> B's span_end -> A's outbound_response
	// (B's span_end is recorded when its headers go out, the response clock includes it)
	bp, _ := propagation.DecodeClock(bHeaders.Get("raceway-clock"))
	if vclock.Compare(entriesOf(call), entriesOf(bss)) != vclock.Before ||
		vclock.Compare(entriesOf(bEnd), entriesOf(ret)) != vclock.Before ||
		vclock.Compare(bp.Clock, entriesOf(bEnd)) != vclock.Equal {
		t.Fatal("cross-service clocks do not reflect the call edges")
	}
	sc := bMain[1]
	if sc.Kind["variable"] != "item:42" || sc.Kind["old_value"].(float64) != 1 || sc.Kind["new_value"].(float64) != 2 ||
		!strings.Contains(sc.Location, "raceway_test.go:") {
		t.Fatalf("state_change %+v", sc)
	}
	col.mu.Lock()
	sawKey := false
	for _, a := range col.auth {
		sawKey = sawKey || a == "Bearer secret"
	}
	col.mu.Unlock()
	if !sawKey {
		t.Fatal("API key not sent as Authorization: Bearer")
	}
	st := cA.Stats()
	if st.EventsSent != uint64(len(aMain)+len(child)) || st.EventsDropped != 0 || st.HeaderParseErrors != 0 {
		t.Fatalf("A stats %+v", st)
	}
}

func hasKey(c []vclock.Entry, k string) bool {
	for _, e := range c {
		if e.Key == k {
			return true
		}
	}
	return false
}

// The outgoing headers of the transport, checked on the wire.
func TestTransportHeaders(t *testing.T) {
	var got []http.Header
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
	}))
	defer srv.Close()
	c := newTestClient(t, Config{ServiceName: "svc", InstanceID: "i"})
	hc := c.HTTPClient()

	// outside any context: a new W3C trace per call
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tp, _, ok := propagation.ParseTraceParentValue(got[0].Get("traceparent"))
	if !ok || tp.Flags != 0x03 {
		t.Fatalf("traceparent %q", got[0].Get("traceparent"))
	}
	if got[0].Get("tracestate") != "raceway="+tp.ParentID.String() {
		t.Fatalf("tracestate %q", got[0].Get("tracestate"))
	}
	if p, k := propagation.DecodeClock(got[0].Get("raceway-clock")); k != "" || p.SpanID != tp.ParentID || p.HasParent() {
		t.Fatalf("clock %v %+v", k, p)
	}

	// inside a context: same trace, fresh distinct child ids, tracestate mutated, flags kept
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, srv.URL, nil)
			req.Header.Set("traceparent", "garbage") // replaced, never duplicated
			resp, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}
	}))
	rec := httptest.NewRecorder()
	in := httptest.NewRequest(http.MethodGet, "/x", nil)
	in.Header.Set("traceparent", "01-"+upTrace+"-"+upParent+"-fe-future")
	in.Header.Set("tracestate", "rojo=1,congo=2")
	h.ServeHTTP(rec, in)
	seen := map[string]bool{}
	var own string
	for _, hd := range got[1:] {
		if len(hd.Values("traceparent")) != 1 {
			t.Fatalf("traceparent lines %q", hd.Values("traceparent"))
		}
		tp, _, ok := propagation.ParseTraceParentValue(hd.Get("traceparent"))
		if !ok || tp.TraceID.String() != upTrace || tp.Flags != 0x02 || !strings.HasPrefix(hd.Get("traceparent"), "00-") {
			t.Fatalf("traceparent %q", hd.Get("traceparent"))
		}
		id := tp.ParentID.String()
		if seen[id] || id == upParent {
			t.Fatal("child span ids must be fresh and distinct")
		}
		seen[id] = true
		if hd.Get("tracestate") != "raceway="+id+",rojo=1,congo=2" {
			t.Fatalf("tracestate %q", hd.Get("tracestate"))
		}
		p, k := propagation.DecodeClock(hd.Get("raceway-clock"))
		if k != "" || p.SpanID != tp.ParentID || p.TraceID.String() != upTrace || !p.HasParent() {
			t.Fatalf("clock %v %+v", k, p)
		}
		if own == "" {
			own = p.ParentSpanID.String()
		} else if own != p.ParentSpanID.String() {
			t.Fatal("parent_span_id must be the sender's own span")
		}
	}
	if len(seen) != 3 {
		t.Fatalf("%d calls", len(seen))
	}
	// the incoming request had no raceway-clock: the span is partial and says so on the wire
	if p, _ := propagation.DecodeClock(got[1].Get("raceway-clock")); len(p.Flags) != 1 || p.Flags[0] != "partial" {
		t.Fatalf("flags %v", p.Flags)
	}
	if p, k := propagation.DecodeClock(rec.Header().Get("raceway-clock")); k != "" || p.SpanID.String() != own ||
		p.ParentSpanID.String() != upParent {
		t.Fatalf("response clock %v %+v", k, p)
	}
}

func TestTraceStateEntryDisabled(t *testing.T) {
	var ts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts = append(ts, r.Header.Get("tracestate"))
	}))
	defer srv.Close()
	c := newTestClient(t, Config{DisableTraceStateEntry: true})
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, srv.URL, nil)
		resp, err := c.HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}))
	in := httptest.NewRequest(http.MethodGet, "/", nil)
	in.Header.Set("traceparent", "00-"+upTrace+"-"+upParent+"-01")
	in.Header.Set("tracestate", "raceway=1111111111111111,rojo=1")
	h.ServeHTTP(httptest.NewRecorder(), in)
	if len(ts) != 1 || ts[0] != "rojo=1" {
		t.Fatalf("tracestate %q", ts)
	}
}

func TestReparentedAndNewTraces(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{ServiceName: "s", InstanceID: "i", Endpoint: col.srv.URL})
	var seen []SpanContext
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc, _ := FromContext(r.Context())
		seen = append(seen, sc)
	}))
	// reparented: the clock names another span of the same trace
	in := httptest.NewRequest(http.MethodGet, "/r", nil)
	in.Header.Set("traceparent", "00-"+upTrace+"-"+upParent+"-01")
	in.Header.Set("raceway-clock", upstreamClock(t, "b7ad6b7169203331"))
	h.ServeHTTP(httptest.NewRecorder(), in)
	// invalid traceparent: new trace, clock ignored
	in = httptest.NewRequest(http.MethodGet, "/n", nil)
	in.Header.Set("traceparent", "00-"+strings.ToUpper(upTrace)+"-"+upParent+"-01")
	in.Header.Set("raceway-clock", upstreamClock(t, upParent))
	h.ServeHTTP(httptest.NewRecorder(), in)
	// conflict
	in = httptest.NewRequest(http.MethodGet, "/c", nil)
	in.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-"+upParent+"-01")
	in.Header.Set("raceway-clock", upstreamClock(t, upParent))
	h.ServeHTTP(httptest.NewRecorder(), in)

	if seen[0].ClockStatus != propagation.ClockStatusReparented || seen[0].ParentSpanID != "b7ad6b7169203331" ||
		seen[0].UpstreamParentID != upParent {
		t.Fatalf("reparented %+v", seen[0])
	}
	if seen[1].TraceID == upTrace || seen[1].ParentSpanID != "" || seen[1].Flags != 0x03 ||
		seen[1].ClockStatus != propagation.ClockStatusIgnored || hasKey(seen[1].Clock, "gateway#gw-1") {
		t.Fatalf("new trace %+v", seen[1])
	}
	if seen[2].ClockStatus != propagation.ClockStatusConflict || hasKey(seen[2].Clock, "gateway#gw-1") {
		t.Fatalf("conflict %+v", seen[2])
	}
	st := c.Stats()
	if st.ClockConflicts != 1 || st.TraceParentErrors != 1 || st.HeaderParseErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
	flush(t, c)
	for _, e := range col.all() {
		if e.Type() != "span_start" {
			continue
		}
		up := e.Kind["upstream"].(map[string]any)
		switch e.SpanID {
		case seen[0].SpanID:
			if *e.ParentSpanID != "b7ad6b7169203331" || up["clock"] != "reparented" {
				t.Fatalf("reparented span_start %+v", e)
			}
		case seen[1].SpanID:
			if e.ParentSpanID != nil || up["traceparent"] != "invalid" || up["clock"] != "ignored" {
				t.Fatalf("new-trace span_start %+v", e)
			}
		}
	}
}

// Hostile headers never fail or slow a request; errors are counted and logged in debug mode only.
func TestHostileHeaders(t *testing.T) {
	var logs bytes.Buffer
	var lmu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		lmu.Lock()
		defer lmu.Unlock()
		return logs.Write(p)
	}), nil))
	for _, debug := range []bool{false, true} {
		logs.Reset()
		c := newTestClient(t, Config{Logger: logger, PropagationHeadersDebug: debug})
		srv := httptest.NewServer(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "fine")
		})))
		bomb := "v1;KLUv_aAKABAAjAAASHsicGFkIjoiIAEA9P85OAICABAgAgAQIAIAECACABAgAgAQIAIAECACABAgUQAAICAgICAgICAifQ"
		cases := [][2]string{
			{"traceparent", "00-" + upTrace + "-" + upParent + "-01"},
			{"tracestate", strings.Repeat("k=v,", 3000)},
			{"raceway-clock", bomb},
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		for _, kv := range cases {
			req.Header.Add(kv[0], kv[1])
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "fine" || time.Since(start) > time.Second {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		req2, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req2.Header.Add("traceparent", "00-"+upTrace+"-"+upParent+"-01")
		req2.Header.Add("traceparent", "garbage")
		resp, err = http.DefaultClient.Do(req2)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("duplicate traceparent: %v", err)
		}
		resp.Body.Close()
		srv.Close()
		st := c.Stats()
		if st.TraceStateErrors != 1 || st.ClockErrors != 1 || st.TraceParentErrors != 1 || st.HeaderParseErrors != 3 {
			t.Fatalf("stats %+v", st)
		}
		lmu.Lock()
		out := logs.String()
		lmu.Unlock()
		if debug != strings.Contains(out, "too_large") || debug != strings.Contains(out, "received headers") {
			t.Fatalf("debug=%v logs:\n%s", debug, out)
		}
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestPropagationDisabledPassesThrough(t *testing.T) {
	c := newTestClient(t, Config{DisablePropagation: true})
	var h http.Handler = http.NewServeMux()
	if got := c.Middleware(h); got == nil || !sameHandler(got, h) {
		t.Fatal("middleware must return next untouched")
	}
	if c.Transport(nil) != http.DefaultTransport {
		t.Fatal("transport must return base untouched")
	}
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hdr = r.Header }))
	defer srv.Close()
	resp, err := c.HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hdr.Get("traceparent") != "" || hdr.Get("raceway-clock") != "" {
		t.Fatal("headers injected while disabled")
	}
}

func sameHandler(a, b http.Handler) bool { return a == b }

func TestZeroConfig(t *testing.T) {
	t.Setenv("RACEWAY_ENDPOINT", "")
	t.Setenv("RACEWAY_SERVICE", "")
	t.Setenv("RACEWAY_INSTANCE_ID", "")
	c, err := New(Config{})
	if err != nil || c.exporter != nil {
		t.Fatalf("zero config: %v", err)
	}
	host, _ := os.Hostname()
	if c.Service() != DefaultServiceName || !strings.HasPrefix(c.Instance(), host+"-") {
		t.Fatalf("defaults %q %q", c.Service(), c.Instance())
	}
	rec := httptest.NewRecorder()
	c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		StateChange(r.Context(), "x", Write, NoValue, 1)
	})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Header().Get("raceway-clock") == "" {
		t.Fatal("propagation-only mode must still answer with raceway-clock")
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RACEWAY_INSTANCE_ID", "from-env")
	t.Setenv("RACEWAY_SERVICE", "svc-env")
	c2, _ := New(Config{})
	if c2.Instance() != "from-env" || c2.Service() != "svc-env" {
		t.Fatal("env defaults")
	}
	if _, err := New(Config{Endpoint: "not a url"}); err == nil {
		t.Fatal("bad endpoint must be reported")
	}
	if MustNew(Config{Endpoint: "ftp://x"}) == nil {
		t.Fatal("MustNew")
	}
	// the tracking API outside any context is a no-op
	ctx := context.Background()
	StateChange(ctx, "x", Read, nil, nil)
	TrackRead(ctx, "x", 1)
	TrackWrite(ctx, "x", 1, 2)
	RecordError(ctx, errors.New("e"))
	Custom(ctx, "c", nil)
	_ = TrackFunction(ctx, "f", func(context.Context) error { return nil })
	var m Mutex
	m.Lock(ctx)
	m.Unlock(ctx)
	wait := Go(ctx, func(context.Context) {})
	wait()
	if _, ok := FromContext(ctx); ok {
		t.Fatal("no context expected")
	}
}

func TestTrackingAPIAndLocks(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{ServiceName: "s", InstanceID: "i", Endpoint: col.srv.URL})
	ctx, end := c.StartSpan(context.Background(), "job")
	m := &Mutex{Name: "account:42"}
	rw := &RWMutex{Name: "cache:1"}
	m.Lock(ctx)
	rw.RLock(ctx)
	StateChange(ctx, "account:42", AtomicRMW, 5, 6)
	rw.RUnlock(ctx)
	m.Unlock(ctx)
	err := TrackFunction(ctx, "billing.Charge", func(ctx context.Context) error {
		time.Sleep(2 * time.Millisecond)
		return errors.New("declined")
	})
	RecordError(ctx, err)
	Custom(ctx, "note", map[string]any{"k": []int{1, 2}})
	func() { defer StartFunction(ctx, "plain")() }()
	end(nil)
	flush(t, c)
	evs := col.all()
	threads := checkThreads(t, evs)
	if len(threads) != 1 {
		t.Fatalf("threads %v", len(threads))
	}
	var list []wireEvent
	for _, l := range threads {
		list = l
	}
	want := "span_start,lock_acquire,lock_acquire,state_change,lock_release,lock_release,function_call,error,custom,function_call,span_end"
	if got := strings.Join(types(list), ","); got != want {
		t.Fatalf("kinds %s", got)
	}
	if len(list[1].LocksHeld) != 1 || list[1].LocksHeld[0] != (LockHeld{"account:42", "exclusive"}) {
		t.Fatalf("locks after acquire %v", list[1].LocksHeld)
	}
	if len(list[3].LocksHeld) != 2 || list[3].LocksHeld[1] != (LockHeld{"cache:1", "shared"}) {
		t.Fatalf("locks during state change %v", list[3].LocksHeld)
	}
	if len(list[4].LocksHeld) != 2 || len(list[5].LocksHeld) != 1 || len(list[6].LocksHeld) != 0 {
		t.Fatal("lock_release must include the lock being released")
	}
	fc := list[6]
	if fc.Kind["function"] != "billing.Charge" || fc.Kind["module"] != "billing" || fc.DurationNS == nil ||
		*fc.DurationNS < uint64(2*time.Millisecond) {
		t.Fatalf("function_call %+v", fc)
	}
	if list[7].Kind["error_type"] != "*errors.errorString" || list[7].Kind["message"] != "declined" {
		t.Fatalf("error %v", list[7].Kind)
	}
	for _, e := range list[1:10] {
		if !strings.Contains(e.Location, "raceway_test.go:") {
			t.Fatalf("%s location %q", e.Type(), e.Location)
		}
	}
	if list[0].Kind["span_kind"] != "internal" || list[0].ParentSpanID != nil {
		t.Fatal("StartSpan")
	}
}

// Concurrent forks, nested forks and lock contention between logical threads: `go test -race` clean.
func TestForkJoinConcurrent(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{ServiceName: "s", InstanceID: "i", Endpoint: col.srv.URL, QueueCapacity: 100000})
	ctx, end := c.StartSpan(context.Background(), "fan-out")
	root, _ := FromContext(ctx)
	m := &Mutex{Name: "counter"}
	shared := 0
	var waits []func()
	for i := 0; i < 8; i++ {
		waits = append(waits, Go(ctx, func(ctx context.Context) {
			for j := 0; j < 20; j++ {
				m.Lock(ctx)
				StateChange(ctx, "counter", Write, shared, shared+1)
				shared++
				m.Unlock(ctx)
			}
			child, join := Fork(ctx)
			done := make(chan struct{})
			go func() { defer close(done); Custom(child, "nested", nil) }()
			<-done
			join()
		}))
	}
	for _, w := range waits {
		w()
	}
	end(nil)
	flush(t, c)
	threads := checkThreads(t, col.all())
	if len(threads) != 1+8+8 {
		t.Fatalf("%d threads", len(threads))
	}
	for i := 1; i <= 8; i++ {
		id := root.SpanID + "." + itoa(i)
		if len(threads[id]) != 20*3+2 {
			t.Fatalf("thread %s has %d events", id, len(threads[id]))
		}
		if n := threads[id+".1"]; len(n) != 1 || n[0].Type() != "custom" {
			t.Fatalf("nested thread %s", id+".1")
		}
	}
	final, _ := FromContext(ctx)
	for id, list := range threads { // the joins merged every child's clock
		if o := vclock.Compare(entriesOf(list[len(list)-1]), final.Clock); o != vclock.Before && o != vclock.Equal {
			t.Fatalf("thread %s is not joined into the final clock %v", id, final.Clock)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestClockIsBounded(t *testing.T) {
	c := newTestClient(t, Config{ServiceName: "s", InstanceID: "i", MaxClockComponents: 4})
	tid, _ := propagation.ParseTraceID(upTrace)
	sid, _ := propagation.ParseSpanID(upParent)
	var entries []vclock.Entry
	for i := 0; i < 10; i++ {
		entries = append(entries, vclock.Entry{Key: "k" + itoa(i), Counter: uint64(i + 1)})
	}
	h, _ := propagation.EncodeClock(&propagation.ClockPayload{TraceID: tid, SpanID: sid, Service: "x", Instance: "y", Clock: entries})
	in := httptest.NewRequest(http.MethodGet, "/", nil)
	in.Header.Set("traceparent", "00-"+upTrace+"-"+upParent+"-01")
	in.Header.Set("raceway-clock", h)
	rec := httptest.NewRecorder()
	c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})).ServeHTTP(rec, in)
	p, k := propagation.DecodeClock(rec.Header().Get("raceway-clock"))
	if k != "" || len(p.Clock) != 4 || !hasKey(p.Clock, "s#i") || !hasKey(p.Clock, "k9") || hasKey(p.Clock, "k0") {
		t.Fatalf("bounded clock %v %v", k, p.Clock)
	}
	if c.Stats().ComponentsDropped == 0 {
		t.Fatal("dropped components not counted")
	}
}

func TestMiddlewareRouteOuterMux(t *testing.T) {
	c := newTestClient(t, Config{})
	mux := http.NewServeMux()
	var seen string
	mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {})
	if got := routeOf(httptest.NewRequest(http.MethodPost, "/orders/7", nil), mux); got != "/orders/{id}" {
		t.Fatalf("route %q", got)
	}
	if got := routeOf(httptest.NewRequest(http.MethodGet, "/plain", nil), nil); got != "/plain" {
		t.Fatalf("route %q", got)
	}
	_ = seen
	// panics still record span_end and propagate to net/http
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic must propagate")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
}

func TestSpecEventExamplesValidate(t *testing.T) {
	body, err := os.ReadFile(specDir() + "/vectors/events/valid_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	validateBatch(t, body)
	var inv struct {
		Cases []struct {
			Name  string          `json:"name"`
			Event json.RawMessage `json:"event"`
		} `json:"cases"`
	}
	raw, _ := os.ReadFile(specDir() + "/vectors/events/invalid_events.json")
	_ = json.Unmarshal(raw, &inv)
	for _, c := range inv.Cases {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(`{"events":[` + string(c.Event) + `]}`)))
		if err != nil {
			continue
		}
		if eventSchema(t).Validate(inst) == nil {
			t.Logf("schema accepts invalid case %q (backend-only rule)", c.Name)
		}
	}
}

func TestDebugLogsSentHeaders(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := newTestClient(t, Config{Logger: logger, PropagationHeadersDebug: true})
	resp, err := c.HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "sent headers") || !strings.Contains(logs.String(), "traceparent=00-") {
		t.Fatalf("logs: %s", logs.String())
	}
}

// Every path through the middleware records span_start (with http) and exactly one
// span_end, recorded when the headers go out, so the response clock is span_end's.
func TestMiddlewareSpanEndOnce(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{ServiceName: "s", InstanceID: "i", Endpoint: col.srv.URL, FlushInterval: time.Hour})
	type result struct {
		kinds string
		code  any // span_end status_code (nil = absent)
		err   bool
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc
		panics  bool
		want    result
	}{
		{"no write (implicit 200)", func(w http.ResponseWriter, r *http.Request) {}, false,
			result{"span_start,span_end", 200.0, false}},
		{"write after headers", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			StateChange(r.Context(), "x", Write, 1, 2) // after the headers: follows span_end
			_, _ = io.WriteString(w, "gone")
			w.WriteHeader(http.StatusTeapot) // superfluous, ignored
		}, false, result{"span_start,span_end,state_change", 404.0, false}},
		{"body only", func(w http.ResponseWriter, r *http.Request) {
			StateChange(r.Context(), "x", Write, 1, 2)
			_, _ = io.WriteString(w, "ok")
		}, false, result{"span_start,state_change,span_end", 200.0, false}},
		{"informational first", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
		}, false, result{"span_start,span_end", 202.0, false}},
		{"5xx", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }, false,
			result{"span_start,span_end", 503.0, true}},
		{"panic before headers", func(w http.ResponseWriter, r *http.Request) { panic("boom") }, true,
			result{"span_start,span_end", 500.0, true}},
		{"panic after headers", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "partial")
			panic("boom")
		}, true, result{"span_start,span_end", 200.0, false}},
	}
	clocks := map[string]string{} // span id -> response raceway-clock
	spanOf := map[string]string{} // case name -> span id
	for _, tc := range cases {
		var sc SpanContext
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if r := recover(); (r != nil) != tc.panics {
					t.Fatalf("%s: recover %v", tc.name, r)
				}
			}()
			c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sc, _ = FromContext(r.Context())
				tc.handler(w, r)
			})).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/p?q=1", nil))
		}()
		spanOf[tc.name] = sc.SpanID
		clocks[sc.SpanID] = rec.Header().Get("raceway-clock")
	}
	// a hijacked connection has no HTTP status: span_end without status_code, at return
	var hijackSpan string
	done := make(chan struct{}) // Close does not wait for hijacked handlers
	mw := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc, _ := FromContext(r.Context())
		hijackSpan = sc.SpanID
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
		_ = brw.Flush()
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		mw.ServeHTTP(w, r)
	}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/p?q=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-done

	flush(t, c)
	threads := checkThreads(t, col.all())
	if len(threads) != len(cases)+1 {
		t.Fatalf("%d threads, want %d", len(threads), len(cases)+1)
	}
	check := func(name, span string, want result) {
		list := threads[span]
		if got := strings.Join(types(list), ","); got != want.kinds {
			t.Fatalf("%s: kinds %s, want %s", name, got, want.kinds)
		}
		ss := list[0]
		if h, _ := ss.Kind["http"].(map[string]any); h["method"] != "POST" || h["route"] != "/p" || h["target"] != "/p?q=1" {
			t.Fatalf("%s: span_start http %v", name, ss.Kind["http"])
		}
		var end wireEvent
		for _, e := range list {
			if e.Type() == "span_end" {
				end = e
			}
		}
		if end.Kind["status_code"] != want.code || end.Kind["error"] != want.err || end.Kind["operation"] != "POST /p" ||
			end.DurationNS == nil || *end.DurationNS == 0 {
			t.Fatalf("%s: span_end %v duration %v", name, end.Kind, end.DurationNS)
		}
		if h, ok := clocks[span]; ok {
			p, k := propagation.DecodeClock(h)
			if k != "" || vclock.Compare(p.Clock, entriesOf(end)) != vclock.Equal {
				t.Fatalf("%s: response clock %v (%s), span_end clock %v", name, p, k, end.VectorClock)
			}
		}
	}
	for _, tc := range cases {
		check(tc.name, spanOf[tc.name], tc.want)
	}
	check("hijack", hijackSpan, result{"span_start,span_end", nil, false})
}
