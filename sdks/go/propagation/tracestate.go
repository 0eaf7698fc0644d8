package propagation

import "strings"

// TraceStateError is an error kind of tracestate extraction (PROPAGATION.md §2.1).
type TraceStateError string

const (
	TraceStateTooLong        TraceStateError = "too_long"
	TraceStateTooManyMembers TraceStateError = "too_many_members"
	TraceStateDuplicateKey   TraceStateError = "duplicate_key"
	TraceStateInvalidMember  TraceStateError = "invalid_member"
)

// Bounds of tracestate.
const (
	MaxTraceStateBytes   = 8192
	MaxTraceStateMembers = 32
	// RacewayKey is Raceway's tracestate key.
	RacewayKey = "raceway"
)

// Member is one tracestate list member.
type Member struct {
	Key   string
	Value string
}

func validKey(k string) bool {
	if len(k) < 1 || len(k) > 256 {
		return false
	}
	c := k[0]
	if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '*' || c == '/' || c == '@') {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	if len(v) < 1 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// ParseTraceState parses all tracestate field lines (joined in order with ",").
// It must only be called when the traceparent was valid. On error the members are nil.
func ParseTraceState(lines []string) ([]Member, TraceStateError, bool) {
	total := 0
	for i, l := range lines {
		if i > 0 {
			total++
		}
		total += len(l)
	}
	if total > MaxTraceStateBytes {
		return nil, TraceStateTooLong, false
	}
	members := []Member{}
	var err TraceStateError
	for _, line := range lines {
		start := 0
		for start <= len(line) {
			var part string
			if end := strings.IndexByte(line[start:], ','); end >= 0 {
				part = line[start : start+end]
				start += end + 1
			} else {
				part = line[start:]
				start = len(line) + 1
			}
			part = TrimOWS(part)
			if part == "" {
				continue
			}
			eq := strings.IndexByte(part, '=')
			if eq < 0 || !validKey(part[:eq]) || !validValue(part[eq+1:]) {
				if err == "" {
					err = TraceStateInvalidMember
				}
				continue
			}
			members = append(members, Member{Key: part[:eq], Value: part[eq+1:]})
		}
	}
	if err != "" {
		return nil, err, false
	}
	if len(members) > MaxTraceStateMembers {
		return nil, TraceStateTooManyMembers, false
	}
	for i := 1; i < len(members); i++ {
		for j := 0; j < i; j++ {
			if members[i].Key == members[j].Key {
				return nil, TraceStateDuplicateKey, false
			}
		}
	}
	return members, "", true
}

// MutateTraceState applies PROPAGATION.md §2.2: remove any raceway member, insert
// raceway=<entry> left-most when entry is non-empty, trim to 32 members from the right.
func MutateTraceState(members []Member, entry string) []Member {
	out := make([]Member, 0, len(members)+1)
	if entry != "" {
		out = append(out, Member{Key: RacewayKey, Value: entry})
	}
	for _, m := range members {
		if m.Key != RacewayKey {
			out = append(out, m)
		}
	}
	if len(out) > MaxTraceStateMembers {
		out = out[:MaxTraceStateMembers]
	}
	return out
}

// FormatTraceState serialises members as key=value joined by "," ("" when empty:
// the header is then not sent).
func FormatTraceState(members []Member) string {
	if len(members) == 0 {
		return ""
	}
	n := len(members) - 1
	for _, m := range members {
		n += len(m.Key) + 1 + len(m.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.Key)
		b.WriteByte('=')
		b.WriteString(m.Value)
	}
	return b.String()
}

// InjectTraceState returns the outgoing tracestate header value for members and
// our entry (empty entry = our entry disabled); "" means: send no header.
func InjectTraceState(members []Member, entry string) string {
	if len(members) == 0 {
		if entry == "" {
			return ""
		}
		return RacewayKey + "=" + entry
	}
	return FormatTraceState(MutateTraceState(members, entry))
}
