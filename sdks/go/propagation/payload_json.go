package propagation

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// A small strict JSON reader for the raceway-clock payload: RFC 8259 grammar,
// exact (case-sensitive) member names, unknown members validated and skipped,
// no reflection. Input is at most 64 KiB (bounded before parsing).

const maxJSONDepth = 256

type jreader struct {
	b []byte
	i int
}

func (r *jreader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jreader) peek() byte {
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *jreader) consume(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

func hexVal(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

func (r *jreader) hex4() (rune, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	var v rune
	for k := 0; k < 4; k++ {
		h, ok := hexVal(r.b[r.i+k])
		if !ok {
			return 0, false
		}
		v = v<<4 | h
	}
	r.i += 4
	return v, true
}

// str reads a JSON string (the reader is at its opening quote after ws).
func (r *jreader) str() (string, bool) {
	r.ws()
	if r.peek() != '"' {
		return "", false
	}
	r.i++
	start := r.i
	// fast path: no escapes
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			s := string(r.b[start:r.i])
			r.i++
			return s, true
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", false
		}
		r.i++
	}
	buf := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			r.i++
			continue
		}
		r.i++
		if r.i >= len(r.b) {
			return "", false
		}
		e := r.b[r.i]
		r.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			v, ok := r.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(v) {
				// a high surrogate followed by \uDC00-\uDFFF makes one rune; lone ones become U+FFFD
				if v < 0xDC00 && r.i+6 <= len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u' {
					save := r.i
					r.i += 2
					if lo, ok := r.hex4(); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						v = utf16.DecodeRune(v, lo)
					} else {
						r.i = save
						v = utf8.RuneError
					}
				} else {
					v = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, v)
		default:
			return "", false
		}
	}
	return "", false
}

// number reads a JSON number token and returns its text.
func (r *jreader) number() ([]byte, bool) {
	r.ws()
	start := r.i
	if r.peek() == '-' {
		r.i++
	}
	switch c := r.peek(); {
	case c == '0':
		r.i++
	case c >= '1' && c <= '9':
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
		}
	default:
		return nil, false
	}
	if r.peek() == '.' {
		r.i++
		n := r.i
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
		}
		if r.i == n {
			return nil, false
		}
	}
	if c := r.peek(); c == 'e' || c == 'E' {
		r.i++
		if c := r.peek(); c == '+' || c == '-' {
			r.i++
		}
		n := r.i
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
		}
		if r.i == n {
			return nil, false
		}
	}
	return r.b[start:r.i], true
}

func (r *jreader) literal(s string) bool {
	if r.i+len(s) <= len(r.b) && string(r.b[r.i:r.i+len(s)]) == s {
		r.i += len(s)
		return true
	}
	return false
}

// skip validates and skips any JSON value.
func (r *jreader) skip(depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	r.ws()
	switch c := r.peek(); {
	case c == '"':
		_, ok := r.str()
		return ok
	case c == '{':
		r.i++
		if r.consume('}') {
			return true
		}
		for {
			if _, ok := r.str(); !ok || !r.consume(':') || !r.skip(depth+1) {
				return false
			}
			if r.consume(',') {
				continue
			}
			return r.consume('}')
		}
	case c == '[':
		r.i++
		if r.consume(']') {
			return true
		}
		for {
			if !r.skip(depth + 1) {
				return false
			}
			if r.consume(',') {
				continue
			}
			return r.consume(']')
		}
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	default:
		_, ok := r.number()
		return ok
	}
}

// isNull consumes a null literal if present.
func (r *jreader) isNull() bool {
	r.ws()
	return r.peek() == 'n' && r.literal("null")
}

// counter reads a non-negative JSON integer without fraction or exponent, ≤ 2^53-1.
func (r *jreader) counter() (uint64, bool) {
	tok, ok := r.number()
	if !ok || len(tok) == 0 || len(tok) > 16 {
		return 0, false
	}
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(tok), 10, 64)
	if err != nil || n > vclock.MaxCounter {
		return 0, false
	}
	return n, true
}

type rawPayload struct {
	traceID, spanID, service, instance     string
	hasTrace, hasSpan, hasService, hasInst bool
	parentSpanID                           string
	hasParent                              bool
	clock                                  []vclock.Entry
	hasClock                               bool
	flags                                  []string
	tooManyComponents, badClock, badFlags  bool
}

// readPayload parses the payload object. ok=false means malformed JSON or a
// wrong type for a known member; field-level rules are checked by the caller.
func readPayload(data []byte) (*rawPayload, bool) {
	r := &jreader{b: data}
	p := &rawPayload{}
	if !r.consume('{') {
		return nil, false
	}
	if !r.consume('}') {
		for {
			key, ok := r.str()
			if !ok || !r.consume(':') {
				return nil, false
			}
			if !readMember(r, p, key) {
				return nil, false
			}
			if r.consume(',') {
				continue
			}
			if !r.consume('}') {
				return nil, false
			}
			break
		}
	}
	r.ws()
	if r.i != len(r.b) {
		return nil, false
	}
	return p, true
}

func readString(r *jreader, dst *string, has *bool) bool {
	s, ok := r.str()
	*dst, *has = s, ok
	return ok
}

func readMember(r *jreader, p *rawPayload, key string) bool {
	switch key {
	case "trace_id":
		return readString(r, &p.traceID, &p.hasTrace)
	case "span_id":
		return readString(r, &p.spanID, &p.hasSpan)
	case "service":
		return readString(r, &p.service, &p.hasService)
	case "instance":
		return readString(r, &p.instance, &p.hasInst)
	case "parent_span_id":
		if r.isNull() {
			p.hasParent = false
			return true
		}
		return readString(r, &p.parentSpanID, &p.hasParent)
	case "clock":
		p.hasClock, p.clock, p.tooManyComponents = true, p.clock[:0], false
		if !r.consume('[') {
			return false
		}
		if r.consume(']') {
			return true
		}
		for {
			if !r.consume('[') {
				return false
			}
			k, ok := r.str()
			if !ok || !r.consume(',') {
				return false
			}
			n, ok := r.counter()
			if !ok || !r.consume(']') {
				return false
			}
			if len(p.clock) >= MaxClockComponents {
				p.tooManyComponents = true
			} else {
				p.clock = append(p.clock, vclock.Entry{Key: k, Counter: n})
			}
			if r.consume(',') {
				continue
			}
			return r.consume(']')
		}
	case "flags":
		p.flags = p.flags[:0]
		if r.isNull() {
			return true
		}
		if !r.consume('[') {
			return false
		}
		if r.consume(']') {
			return true
		}
		for {
			f, ok := r.str()
			if !ok {
				return false
			}
			p.flags = append(p.flags, f)
			if r.consume(',') {
				continue
			}
			return r.consume(']')
		}
	default:
		return r.skip(1)
	}
}
