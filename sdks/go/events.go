package raceway

import (
	"encoding/json"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// timestampLayout is RFC 3339 with nanoseconds, UTC ("Z").
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// LockHeld is one entry of an event's locks_held.
type LockHeld struct {
	Lock string `json:"lock"`
	Mode string `json:"mode"` // "exclusive" | "shared"
}

// Lock modes.
const (
	ModeExclusive = "exclusive"
	ModeShared    = "shared"
)

// Clock is a vector clock as sent on the wire: [[key, counter], ...].
type Clock []vclock.Entry

// MarshalJSON writes [[key, n], ...].
func (c Clock) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(c)*24)
	b = append(b, '[')
	for i, e := range c {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = propagation.AppendJSONString(b, e.Key)
		b = append(b, ',')
		b = strconv.AppendUint(b, e.Counter, 10)
		b = append(b, ']')
	}
	return append(b, ']'), nil
}

// Event is one Raceway event (spec/EVENTS.md).
type Event struct {
	ID           string            `json:"id"`
	TraceID      string            `json:"trace_id"`
	SpanID       string            `json:"span_id"`
	ParentSpanID *string           `json:"parent_span_id"`
	ThreadID     string            `json:"thread_id"`
	Seq          uint64            `json:"seq"`
	Service      string            `json:"service"`
	Instance     string            `json:"instance"`
	Timestamp    string            `json:"timestamp"`
	DurationNS   *uint64           `json:"duration_ns,omitempty"`
	VectorClock  Clock             `json:"vector_clock"`
	LocksHeld    []LockHeld        `json:"locks_held"`
	Location     string            `json:"location,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Kind         map[string]any    `json:"kind"`

	at time.Time // formatted into Timestamp by the exporter, off the caller's path
}

var locCache sync.Map // pc -> "file:line"

// callerLocation returns "file:line" of the frame skip levels up (0 = the caller of
// callerLocation, as runtime.Caller counts from its own caller's perspective + 1).
func callerLocation(skip int) string {
	var pcs [1]uintptr
	if runtime.Callers(skip+1, pcs[:]) < 1 {
		return ""
	}
	if v, ok := locCache.Load(pcs[0]); ok {
		return v.(string)
	}
	f, _ := runtime.CallersFrames(pcs[:]).Next()
	if f.File == "" {
		return ""
	}
	loc := f.File + ":" + strconv.Itoa(f.Line)
	if len(loc) > 1024 {
		loc = loc[len(loc)-1024:]
	}
	locCache.Store(pcs[0], loc)
	return loc
}

func kindSpanStart(operation, spanKind string, httpInfo map[string]any, upstream map[string]any) map[string]any {
	k := map[string]any{"type": "span_start", "operation": operation, "span_kind": spanKind}
	if httpInfo != nil {
		k["http"] = httpInfo
	}
	if upstream != nil {
		k["upstream"] = upstream
	}
	return k
}

// encodeBatch returns {"events":[...]} for evs.
func encodeBatch(evs []*Event) ([]byte, error) {
	b := make([]byte, 0, 256+len(evs)*600)
	b = append(b, `{"events":[`...)
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = ev.appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// MarshalJSON writes the event without reflection for the common field types
// (user values in state_change / custom fall back to encoding/json).
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.appendJSON(make([]byte, 0, 512))
}

func (e *Event) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = propagation.AppendJSONString(b, e.ID)
	b = append(b, `,"trace_id":`...)
	b = propagation.AppendJSONString(b, e.TraceID)
	b = append(b, `,"span_id":`...)
	b = propagation.AppendJSONString(b, e.SpanID)
	b = append(b, `,"parent_span_id":`...)
	if e.ParentSpanID != nil {
		b = propagation.AppendJSONString(b, *e.ParentSpanID)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"thread_id":`...)
	b = propagation.AppendJSONString(b, e.ThreadID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"service":`...)
	b = propagation.AppendJSONString(b, e.Service)
	b = append(b, `,"instance":`...)
	b = propagation.AppendJSONString(b, e.Instance)
	b = append(b, `,"timestamp":"`...)
	if e.Timestamp != "" {
		b = append(b, e.Timestamp...)
	} else {
		b = e.at.UTC().AppendFormat(b, timestampLayout)
	}
	b = append(b, '"')
	if e.DurationNS != nil {
		b = append(b, `,"duration_ns":`...)
		b = strconv.AppendUint(b, *e.DurationNS, 10)
	}
	b = append(b, `,"vector_clock":`...)
	cl, _ := e.VectorClock.MarshalJSON()
	b = append(b, cl...)
	b = append(b, `,"locks_held":[`...)
	for i, l := range e.LocksHeld {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"lock":`...)
		b = propagation.AppendJSONString(b, l.Lock)
		b = append(b, `,"mode":`...)
		b = propagation.AppendJSONString(b, l.Mode)
		b = append(b, '}')
	}
	b = append(b, ']')
	if e.Location != "" {
		b = append(b, `,"location":`...)
		b = propagation.AppendJSONString(b, e.Location)
	}
	if len(e.Tags) > 0 {
		b = append(b, `,"tags":{`...)
		first := true
		for k, v := range e.Tags {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = propagation.AppendJSONString(b, k)
			b = append(b, ':')
			b = propagation.AppendJSONString(b, v)
		}
		b = append(b, '}')
	}
	b = append(b, `,"kind":`...)
	var err error
	if b, err = appendValue(b, e.Kind, 0); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return propagation.AppendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case map[string]any:
		if depth > 8 {
			break
		}
		b = append(b, '{')
		first := true
		for k, val := range x {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = propagation.AppendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, val, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}
