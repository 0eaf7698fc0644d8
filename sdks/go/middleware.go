package raceway

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// Middleware returns net/http server middleware: it extracts the propagation
// headers, continues or starts the trace, records span_start (with http) and
// span_end per request, runs next inside the Raceway context, and answers with a
// raceway-clock response header. span_end is recorded when the response headers
// go out (or when next returns without writing, or panics), right before the
// response clock is taken, so the clock the caller merges includes it. The route
// is r.Pattern (Go 1.22 ServeMux) when set; when next is a *http.ServeMux its
// matched pattern is used; else the path.
func (c *Client) Middleware(next http.Handler) http.Handler {
	if c.cfg.DisablePropagation {
		return next
	}
	mux, _ := next.(*http.ServeMux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.serve(w, r, next, mux)
	})
}

func routeOf(r *http.Request, mux *http.ServeMux) string {
	pattern := r.Pattern
	if pattern == "" && mux != nil {
		_, pattern = mux.Handler(r)
	}
	if pattern == "" {
		return r.URL.Path
	}
	// "[METHOD ][HOST]/[PATH]": drop the method, it is in the operation already
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	return pattern
}

func (c *Client) startServerSpan(r *http.Request) (*thread, propagation.Extraction) {
	c.stats.requests.Add(1)
	ex := propagation.Extract(r.Header)
	if c.cfg.PropagationHeadersDebug {
		c.debug("received headers",
			"traceparent", strings.Join(r.Header.Values(propagation.HeaderTraceParent), ","),
			"tracestate", strings.Join(r.Header.Values(propagation.HeaderTraceState), ","),
			"raceway-clock", strings.Join(r.Header.Values(propagation.HeaderRacewayClock), ","),
			"clock_status", string(ex.ClockStatus))
	}
	if ex.TraceParentError != "" {
		c.stats.traceParentErrors.Add(1)
		c.debug("invalid traceparent", "error", string(ex.TraceParentError))
	}
	if ex.TraceStateError != "" {
		c.stats.traceStateErrors.Add(1)
		c.debug("invalid tracestate", "error", string(ex.TraceStateError))
	}
	switch {
	case ex.ClockStatus.IsError():
		c.stats.clockErrors.Add(1)
		c.debug("invalid raceway-clock", "error", string(ex.ClockStatus))
	case ex.ClockStatus == propagation.ClockStatusConflict:
		c.stats.clockConflicts.Add(1)
	case ex.Continued && ex.ClockStatus == propagation.ClockStatusAbsent:
		c.stats.clockPartial.Add(1)
	}
	var s *span
	clock := vclock.New()
	if ex.Continued {
		s = newSpan(c, ex.TraceParent.TraceID, randomSpanID())
		s.flags = ex.TraceParent.Flags
		s.traceState = ex.TraceState
		s.upstreamID = ex.TraceParent.ParentID
		up, _ := ex.UpstreamCallID()
		s.setParent(up)
		if ex.ClockStatus.Merged() {
			clock.Merge(ex.Clock.Clock)
		}
	} else {
		s = newSpan(c, randomTraceID(), randomSpanID())
		s.flags = propagation.FlagSampled | propagation.FlagRandom
	}
	s.clockStatus = ex.ClockStatus
	if ex.Continued && ex.ClockStatus == propagation.ClockStatusAbsent {
		s.wireFlags = partialFlags
	}
	return &thread{span: s, id: s.spanHex, clock: clock}, ex
}

var partialFlags = []string{"partial"}

func (c *Client) serve(w http.ResponseWriter, r *http.Request, next http.Handler, mux *http.ServeMux) {
	start := time.Now()
	t, ex := c.startServerSpan(r)
	route := routeOf(r, mux)
	operation := truncateUTF8(r.Method+" "+route, 256)
	if operation == "" {
		operation = "HTTP"
	}
	target := r.URL.RequestURI()
	tpStatus := "absent"
	switch {
	case ex.Continued:
		tpStatus = "valid"
	case ex.TraceParentError != "":
		tpStatus = "invalid"
	}
	exporting := t.exporting()
	var kStart map[string]any
	if exporting { // in propagation-only mode only the ticks matter
		kStart = kindSpanStart(operation, "server",
			map[string]any{"method": r.Method, "route": route, "target": target},
			map[string]any{"traceparent": tpStatus, "clock": string(ex.ClockStatus)})
	}
	// span_start: its tick is the span's start tick (after merging the incoming clock)
	t.record(kStart, nil, "")

	rw := &responseWriter{ResponseWriter: w, c: c, t: t, status: http.StatusOK, start: start, operation: operation}
	ctx := withThread(r.Context(), t)
	panicked := true
	defer func() {
		// span_end once: a no-op when the headers already went out (commit ran then)
		switch {
		case panicked:
			rw.commit(http.StatusInternalServerError, true)
		case rw.hijacked:
			rw.commit(0, false) // the connection was taken over: no HTTP status
		default:
			rw.commit(rw.status, false) // wrote nothing: net/http sends 200 after we return
		}
	}()
	next.ServeHTTP(rw, r.WithContext(ctx))
	panicked = false
}

// responseHeaderClock builds the response raceway-clock of the server span.
func (c *Client) responseClockHeader(t *thread) string {
	t.mu.Lock()
	p := &propagation.ClockPayload{
		TraceID:      t.span.traceID,
		SpanID:       t.span.spanID,
		ParentSpanID: t.span.upstreamID,
		Service:      c.service,
		Instance:     c.instance,
		Clock:        t.clock.Entries(),
		Flags:        t.span.wireFlags,
	}
	t.mu.Unlock()
	h, err := propagation.EncodeClock(p)
	if err != nil {
		c.stats.injectErrors.Add(1)
		return ""
	}
	return h
}

// responseWriter records span_end and sets raceway-clock right before the
// response headers go out (the response is being sent), so that the clock the
// caller merges includes span_end. commit runs once per request: at the first
// WriteHeader / Write / Flush, else when the handler returns or panics.
type responseWriter struct {
	http.ResponseWriter
	c           *Client
	t           *thread
	once        sync.Once
	start       time.Time
	operation   string
	status      int
	wroteHeader bool
	hijacked    bool
}

// commit records span_end (status 0 = no HTTP status: status_code is omitted;
// duration up to now) and sets the response raceway-clock, whose clock includes it.
func (w *responseWriter) commit(status int, panicked bool) {
	w.once.Do(func() {
		d := uint64(time.Since(w.start))
		var k map[string]any
		if w.t.exporting() {
			k = map[string]any{"type": "span_end", "operation": w.operation, "error": panicked || status >= 500}
			if status != 0 {
				k["status_code"] = status
			}
		}
		w.t.record(k, &d, "")
		if h := w.c.responseClockHeader(w.t); h != "" {
			w.ResponseWriter.Header().Set(propagation.HeaderRacewayClock, h)
			w.c.debug("sent response header", "raceway-clock", h)
		}
	})
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			// informational responses do not end the header phase
			w.ResponseWriter.WriteHeader(code)
			return
		}
		w.status = code
		w.commit(code, false)
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker when the underlying writer does.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wroteHeader {
		w.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
