// Package propagation implements the Raceway wire format (spec/PROPAGATION.md):
// W3C traceparent / tracestate (Level 2 rules) and the raceway-clock vendor header.
// Everything here is a pure function without I/O.
package propagation

import (
	"encoding/hex"
	"strings"
)

// Header names (emitted lowercase).
const (
	HeaderTraceParent  = "traceparent"
	HeaderTraceState   = "tracestate"
	HeaderRacewayClock = "raceway-clock"
)

// Trace flag bits kept by Raceway.
const (
	FlagSampled byte = 0x01
	FlagRandom  byte = 0x02
	flagMask    byte = 0x03
)

// TraceID is a 128-bit W3C trace id.
type TraceID [16]byte

// SpanID is a 64-bit W3C parent-id / span id.
type SpanID [8]byte

// IsZero reports whether all bytes are zero.
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether all bytes are zero.
func (s SpanID) IsZero() bool { return s == SpanID{} }

// String returns 32 lowercase hex digits.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// String returns 16 lowercase hex digits.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// UUID returns the trace id as UUID text 8-4-4-4-12 (lowercase).
func (t TraceID) UUID() string {
	var b [36]byte
	hex.Encode(b[0:8], t[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], t[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], t[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], t[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], t[10:16])
	return string(b[:])
}

// TraceParentError is an error kind of traceparent extraction (PROPAGATION.md §1.1).
type TraceParentError string

const (
	// TraceParentAbsent is not an error: no traceparent line was received.
	TraceParentAbsent       TraceParentError = "absent"
	TraceParentDuplicate    TraceParentError = "duplicate"
	TraceParentMalformed    TraceParentError = "malformed"
	TraceParentZeroTraceID  TraceParentError = "zero_trace_id"
	TraceParentZeroParentID TraceParentError = "zero_parent_id"
)

// TraceParent is a valid extracted traceparent.
type TraceParent struct {
	TraceID  TraceID
	ParentID SpanID
	Flags    byte // already masked with 0x03
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// TrimOWS strips leading and trailing SP / HTAB.
func TrimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && isOWS(s[i]) {
		i++
	}
	for j > i && isOWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// decodeLowerHex decodes len(dst)*2 lowercase hex digits from s.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexVal(s[2*i])
		lo, ok2 := lowerHexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

// ParseTraceParent extracts a traceparent from all received field lines (in order).
// It returns ok=true with the parsed value, or ok=false with the error kind
// (TraceParentAbsent when there was no line).
func ParseTraceParent(lines []string) (TraceParent, TraceParentError, bool) {
	switch len(lines) {
	case 0:
		return TraceParent{}, TraceParentAbsent, false
	case 1:
	default:
		return TraceParent{}, TraceParentDuplicate, false
	}
	return ParseTraceParentValue(lines[0])
}

// ParseTraceParentValue parses one traceparent field value.
func ParseTraceParentValue(v string) (TraceParent, TraceParentError, bool) {
	var tp TraceParent
	v = TrimOWS(v)
	if len(v) < 55 {
		return tp, TraceParentMalformed, false
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], v[0:2]) || ver[0] == 0xff {
		return tp, TraceParentMalformed, false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return tp, TraceParentMalformed, false
	}
	if !decodeLowerHex(tp.TraceID[:], v[3:35]) || !decodeLowerHex(tp.ParentID[:], v[36:52]) {
		return tp, TraceParentMalformed, false
	}
	var fl [1]byte
	if !decodeLowerHex(fl[:], v[53:55]) {
		return tp, TraceParentMalformed, false
	}
	if ver[0] == 0 {
		if len(v) != 55 {
			return tp, TraceParentMalformed, false
		}
	} else if len(v) > 55 && v[55] != '-' {
		return tp, TraceParentMalformed, false
	}
	if tp.TraceID.IsZero() {
		return tp, TraceParentZeroTraceID, false
	}
	if tp.ParentID.IsZero() {
		return tp, TraceParentZeroParentID, false
	}
	tp.Flags = fl[0] & flagMask
	return tp, "", true
}

const hexdigits = "0123456789abcdef"

// FormatTraceParent returns "00-<trace>-<parent>-<flags & 0x03>".
func FormatTraceParent(trace TraceID, parent SpanID, flags byte) string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], trace[:])
	b[35] = '-'
	hex.Encode(b[36:52], parent[:])
	b[52] = '-'
	f := flags & flagMask
	b[53], b[54] = hexdigits[f>>4], hexdigits[f&0xf]
	return string(b[:])
}

// FlagsHex returns the two-digit lowercase hex of flags.
func FlagsHex(f byte) string { return string([]byte{hexdigits[f>>4], hexdigits[f&0xf]}) }

// ParseSpanID parses 16 lowercase hex digits (not all zero).
func ParseSpanID(s string) (SpanID, bool) {
	var id SpanID
	if !decodeLowerHex(id[:], s) || id.IsZero() {
		return SpanID{}, false
	}
	return id, true
}

// ParseTraceID parses 32 lowercase hex digits (not all zero).
func ParseTraceID(s string) (TraceID, bool) {
	var id TraceID
	if !decodeLowerHex(id[:], s) || id.IsZero() {
		return TraceID{}, false
	}
	return id, true
}

// ParseUUID parses UUID text 8-4-4-4-12 in either case.
func ParseUUID(s string) (TraceID, bool) {
	var id TraceID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	h := strings.ToLower(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if !decodeLowerHex(id[:], h) {
		return TraceID{}, false
	}
	return id, true
}
