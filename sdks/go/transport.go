package raceway

import (
	"net/http"

	"github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// Transport returns an http.RoundTripper that propagates the Raceway context of
// each request's ctx (traceparent, tracestate, raceway-clock), records
// outbound_call / outbound_response and merges the callee's response clock.
// A nil base uses http.DefaultTransport.
func (c *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if c.cfg.DisablePropagation {
		return base
	}
	return &transport{c: c, base: base}
}

// HTTPClient returns an *http.Client using Transport(nil).
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: c.Transport(nil)}
}

type transport struct {
	c    *Client
	base http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := tr.c
	c.stats.outboundCalls.Add(1)
	t := threadFrom(req.Context())
	childID := randomSpanID()
	out := req.Clone(req.Context())
	if out.Header == nil {
		out.Header = http.Header{}
	}
	entry := ""
	if !c.cfg.DisableTraceStateEntry {
		entry = childID.String()
	}
	urlStr := ""
	if req.URL != nil {
		urlStr = req.URL.Redacted()
	}
	loc := callerLocationOutsideHTTP()
	var payload *propagation.ClockPayload
	if t == nil {
		// outside any context: a new trace for this call (W3C §1.3), no events
		traceID := randomTraceID()
		out.Header.Set(propagation.HeaderTraceParent,
			propagation.FormatTraceParent(traceID, childID, propagation.FlagSampled|propagation.FlagRandom))
		setOrDel(out.Header, propagation.HeaderTraceState, propagation.InjectTraceState(nil, entry))
		clock := vclock.New()
		clock.Tick(c.ownKey)
		payload = &propagation.ClockPayload{TraceID: traceID, SpanID: childID, Service: c.service,
			Instance: c.instance, Clock: clock.Entries()}
	} else {
		s := t.span
		t.mu.Lock()
		method := req.Method
		if method == "" {
			method = http.MethodGet
		}
		t.recordLocked(map[string]any{"type": "outbound_call", "child_span_id": childID.String(),
			"protocol": "http", "method": method, "url": urlStr}, nil, loc)
		payload = &propagation.ClockPayload{TraceID: s.traceID, SpanID: childID, ParentSpanID: s.spanID,
			Service: c.service, Instance: c.instance, Clock: t.clock.Entries(), Flags: s.wireFlags}
		t.mu.Unlock()
		out.Header.Set(propagation.HeaderTraceParent, propagation.FormatTraceParent(s.traceID, childID, s.flags))
		setOrDel(out.Header, propagation.HeaderTraceState, propagation.InjectTraceState(s.traceState, entry))
	}
	if h, err := propagation.EncodeClock(payload); err == nil {
		out.Header.Set(propagation.HeaderRacewayClock, h)
	} else {
		out.Header.Del(propagation.HeaderRacewayClock)
		c.stats.injectErrors.Add(1)
	}
	if c.cfg.PropagationHeadersDebug {
		c.debug("sent headers", "url", urlStr,
			"traceparent", out.Header.Get(propagation.HeaderTraceParent),
			"tracestate", out.Header.Get(propagation.HeaderTraceState),
			"raceway-clock", out.Header.Get(propagation.HeaderRacewayClock))
	}

	resp, err := tr.base.RoundTrip(out)
	if t == nil {
		return resp, err
	}
	kind := map[string]any{"type": "outbound_response", "child_span_id": childID.String()}
	if err != nil {
		kind["error"] = err.Error()
		t.record(kind, nil, loc)
		return resp, err
	}
	kind["status"] = resp.StatusCode
	lines := propagation.Lines(resp.Header, propagation.HeaderRacewayClock)
	t.mu.Lock()
	if len(lines) == 1 {
		if p, cerr := propagation.DecodeClock(lines[0]); cerr == "" {
			callee := map[string]any{"trace_id": p.TraceID.UUID(), "span_id": p.SpanID.String(),
				"service": p.Service, "instance": p.Instance}
			kind["callee"] = callee
			t.clock.Merge(p.Clock)
			if p.TraceID != t.span.traceID {
				c.stats.clockConflicts.Add(1)
			}
		} else {
			c.stats.clockErrors.Add(1)
			c.debug("invalid response raceway-clock", "error", string(cerr))
		}
	} else if len(lines) > 1 {
		c.stats.clockErrors.Add(1)
	}
	t.recordLocked(kind, nil, loc)
	t.mu.Unlock()
	return resp, nil
}

func setOrDel(h http.Header, name, value string) {
	if value == "" {
		h.Del(name)
		return
	}
	h.Set(name, value)
}
