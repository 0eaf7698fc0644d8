package propagation

import (
	"net/http"
	"net/textproto"
)

// ClockStatus is the raceway-clock outcome of a whole-request extraction (PROPAGATION.md §3.5).
type ClockStatus string

const (
	ClockStatusOK                 ClockStatus = "ok"
	ClockStatusReparented         ClockStatus = "reparented"
	ClockStatusConflict           ClockStatus = "conflict"
	ClockStatusAbsent             ClockStatus = "absent"
	ClockStatusIgnored            ClockStatus = "ignored"
	ClockStatusTooLong            ClockStatus = ClockStatus(ClockTooLong)
	ClockStatusUnsupportedVersion ClockStatus = ClockStatus(ClockUnsupportedVersion)
	ClockStatusMalformed          ClockStatus = ClockStatus(ClockMalformed)
	ClockStatusTooLarge           ClockStatus = ClockStatus(ClockTooLarge)
	ClockStatusTooManyComponents  ClockStatus = ClockStatus(ClockTooManyComponents)
)

// Merged reports whether the clock is to be merged (status ok or reparented).
func (s ClockStatus) Merged() bool { return s == ClockStatusOK || s == ClockStatusReparented }

// IsError reports whether the status is a decoding error kind.
func (s ClockStatus) IsError() bool {
	switch s {
	case ClockStatusTooLong, ClockStatusUnsupportedVersion, ClockStatusMalformed, ClockStatusTooLarge,
		ClockStatusTooManyComponents:
		return true
	}
	return false
}

// Extraction is the result of extracting all three headers of a request.
type Extraction struct {
	// Continued is true when a valid traceparent was received.
	Continued   bool
	TraceParent TraceParent // valid when Continued
	// TraceParentError is the error kind of an invalid traceparent ("" when valid or absent).
	TraceParentError TraceParentError
	// TraceParentPresent is true when at least one traceparent line was received.
	TraceParentPresent bool
	// TraceState is the parsed list (empty when absent, invalid or not continued).
	TraceState      []Member
	TraceStateError TraceStateError
	ClockStatus     ClockStatus
	// Clock is the decoded payload when ClockStatus is ok or reparented.
	Clock *ClockPayload
}

// UpstreamCallID returns the id of the upstream call (the span's parent_span_id):
// the received parent-id, or the clock's span id when the status is reparented.
func (e *Extraction) UpstreamCallID() (SpanID, bool) {
	if !e.Continued {
		return SpanID{}, false
	}
	if e.ClockStatus == ClockStatusReparented && e.Clock != nil {
		return e.Clock.SpanID, true
	}
	return e.TraceParent.ParentID, true
}

// Lines returns every field line named name (ASCII case-insensitive) in order.
func Lines(h http.Header, name string) []string {
	if v, ok := h[textproto.CanonicalMIMEHeaderKey(name)]; ok {
		return v
	}
	// headers built by hand may use non-canonical keys
	var out []string
	for k, v := range h {
		if len(k) == len(name) && equalFoldASCII(k, name) && k != textproto.CanonicalMIMEHeaderKey(name) {
			out = append(out, v...)
		}
	}
	return out
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Extract applies PROPAGATION.md to the request headers.
func Extract(h http.Header) Extraction {
	return ExtractLines(Lines(h, HeaderTraceParent), Lines(h, HeaderTraceState), Lines(h, HeaderRacewayClock))
}

// ExtractLines is Extract on already separated field lines.
func ExtractLines(traceparent, tracestate, clock []string) Extraction {
	ex := Extraction{TraceState: []Member{}, ClockStatus: ClockStatusAbsent}
	tp, tpErr, ok := ParseTraceParent(traceparent)
	ex.TraceParentPresent = len(traceparent) > 0
	if !ok {
		if tpErr != TraceParentAbsent {
			ex.TraceParentError = tpErr
		}
		if len(clock) > 0 {
			ex.ClockStatus = ClockStatusIgnored
		}
		return ex
	}
	ex.Continued = true
	ex.TraceParent = tp
	if members, tsErr, ok := ParseTraceState(tracestate); ok {
		ex.TraceState = members
	} else {
		ex.TraceStateError = tsErr
	}
	switch len(clock) {
	case 0:
		ex.ClockStatus = ClockStatusAbsent
	case 1:
		p, cErr := DecodeClock(clock[0])
		switch {
		case cErr != "":
			ex.ClockStatus = ClockStatus(cErr)
		case p.TraceID != tp.TraceID:
			ex.ClockStatus = ClockStatusConflict
		case p.SpanID != tp.ParentID:
			ex.ClockStatus = ClockStatusReparented
			ex.Clock = p
		default:
			ex.ClockStatus = ClockStatusOK
			ex.Clock = p
		}
	default:
		ex.ClockStatus = ClockStatusMalformed
	}
	return ex
}
