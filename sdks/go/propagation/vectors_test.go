package propagation

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// vectorsDir is the shared golden vectors folder (../../spec/vectors from the SDK root).
func vectorsDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	sdkRoot := filepath.Dir(filepath.Dir(file))
	return filepath.Join(sdkRoot, "..", "..", "spec", "vectors")
}

func loadVectors(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorsDir(t), name))
	if err != nil {
		t.Fatalf("read vectors %s: %v", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse vectors %s: %v", name, err)
	}
}

// canon normalises a decoded JSON payload to canonical form (clock sorted by key,
// parent_span_id null when absent, flags [] when absent) for comparison.
func canon(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, x := range m {
		out[k] = x
	}
	if _, ok := out["parent_span_id"]; !ok {
		out["parent_span_id"] = nil
	}
	if f, ok := out["flags"]; !ok || f == nil {
		out["flags"] = []any{}
	}
	if c, ok := out["clock"].([]any); ok {
		entries := make([]vclock.Entry, 0, len(c))
		for _, e := range c {
			p := e.([]any)
			entries = append(entries, vclock.Entry{Key: p[0].(string), Counter: uint64(p[1].(float64))})
		}
		entries = vclock.SortEntries(entries)
		cl := make([]any, 0, len(entries))
		for _, e := range entries {
			cl = append(cl, []any{e.Key, float64(e.Counter)})
		}
		out["clock"] = cl
	}
	return out
}

// roundJSON passes a value through encoding/json so numbers compare as float64.
func roundJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVectorsTraceParent(t *testing.T) {
	var f struct {
		Cases []struct {
			Name     string   `json:"name"`
			Lines    []string `json:"lines"`
			Valid    bool     `json:"valid"`
			TraceID  string   `json:"trace_id"`
			ParentID string   `json:"parent_id"`
			Flags    string   `json:"flags"`
			Error    string   `json:"error"`
		} `json:"cases"`
	}
	loadVectors(t, "traceparent.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			tp, kind, ok := ParseTraceParent(c.Lines)
			if ok != c.Valid {
				t.Fatalf("valid=%v (kind %q), want %v", ok, kind, c.Valid)
			}
			if !ok {
				if string(kind) != c.Error {
					t.Fatalf("error %q, want %q", kind, c.Error)
				}
				return
			}
			if tp.TraceID.String() != c.TraceID || tp.ParentID.String() != c.ParentID || FlagsHex(tp.Flags) != c.Flags {
				t.Fatalf("got %s %s %s", tp.TraceID, tp.ParentID, FlagsHex(tp.Flags))
			}
			// re-injection is always version 00 with masked flags
			want := "00-" + c.TraceID + "-" + c.ParentID + "-" + c.Flags
			if got := FormatTraceParent(tp.TraceID, tp.ParentID, tp.Flags); got != want {
				t.Fatalf("inject %q, want %q", got, want)
			}
		})
	}
	t.Logf("%d traceparent cases", len(f.Cases))
}

func TestVectorsTraceState(t *testing.T) {
	var f struct {
		Cases []struct {
			Name    string     `json:"name"`
			Lines   []string   `json:"lines"`
			Valid   bool       `json:"valid"`
			Members [][]string `json:"members"`
			Error   string     `json:"error"`
		} `json:"cases"`
		Mutations []struct {
			Name           string     `json:"name"`
			Members        [][]string `json:"members"`
			Entry          *string    `json:"entry"`
			ExpectedHeader *string    `json:"expected_header"`
		} `json:"mutations"`
	}
	loadVectors(t, "tracestate.json", &f)
	if len(f.Cases) == 0 || len(f.Mutations) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run("parse/"+c.Name, func(t *testing.T) {
			members, kind, ok := ParseTraceState(c.Lines)
			if ok != c.Valid {
				t.Fatalf("valid=%v (kind %q), want %v", ok, kind, c.Valid)
			}
			if !ok {
				if string(kind) != c.Error {
					t.Fatalf("error %q, want %q", kind, c.Error)
				}
				return
			}
			got := [][]string{}
			for _, m := range members {
				got = append(got, []string{m.Key, m.Value})
			}
			if !reflect.DeepEqual(got, c.Members) {
				t.Fatalf("members %q, want %q", got, c.Members)
			}
		})
	}
	for _, c := range f.Mutations {
		t.Run("mutate/"+c.Name, func(t *testing.T) {
			var members []Member
			for _, m := range c.Members {
				members = append(members, Member{Key: m[0], Value: m[1]})
			}
			entry := ""
			if c.Entry != nil {
				entry = *c.Entry
			}
			got := InjectTraceState(members, entry)
			want := ""
			if c.ExpectedHeader != nil {
				want = *c.ExpectedHeader
			}
			if got != want {
				t.Fatalf("header %q, want %q", got, want)
			}
		})
	}
}

func TestVectorsRacewayClock(t *testing.T) {
	var f struct {
		Decode []struct {
			Name    string         `json:"name"`
			Header  string         `json:"header"`
			Valid   bool           `json:"valid"`
			Payload map[string]any `json:"payload"`
			Error   string         `json:"error"`
		} `json:"decode"`
		Roundtrip []struct {
			Name    string         `json:"name"`
			Payload map[string]any `json:"payload"`
		} `json:"roundtrip"`
	}
	loadVectors(t, "raceway_clock.json", &f)
	if len(f.Decode) == 0 || len(f.Roundtrip) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Decode {
		t.Run("decode/"+c.Name, func(t *testing.T) {
			p, kind := DecodeClock(c.Header)
			if (kind == "") != c.Valid {
				t.Fatalf("valid=%v (kind %q), want %v", kind == "", kind, c.Valid)
			}
			if kind != "" {
				if string(kind) != c.Error {
					t.Fatalf("error %q, want %q", kind, c.Error)
				}
				return
			}
			got := roundJSON(t, p.Canonical())
			if want := canon(roundJSON(t, c.Payload)); !reflect.DeepEqual(got, want) {
				t.Fatalf("payload\n got %v\nwant %v", got, want)
			}
		})
	}
	for _, c := range f.Roundtrip {
		t.Run("roundtrip/"+c.Name, func(t *testing.T) {
			// build the payload from the vector via the plain-JSON decoder path
			raw, _ := json.Marshal(c.Payload)
			p, kind := parsePayload(raw)
			if kind != "" {
				t.Fatalf("vector payload rejected: %s", kind)
			}
			h, err := EncodeClock(p)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !strings.HasPrefix(h, "v1;KLUv_") {
				t.Fatalf("encoder must emit a zstd frame: %.20s", h)
			}
			back, kind := DecodeClock(h)
			if kind != "" {
				t.Fatalf("decode(encode) failed: %s", kind)
			}
			got := roundJSON(t, back.Canonical())
			if want := canon(roundJSON(t, c.Payload)); !reflect.DeepEqual(got, want) {
				t.Fatalf("roundtrip\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestVectorsPropagation(t *testing.T) {
	var f struct {
		Cases []struct {
			Name     string     `json:"name"`
			Headers  [][]string `json:"headers"`
			Expected struct {
				Trace            string         `json:"trace"`
				TraceID          string         `json:"trace_id"`
				ParentID         string         `json:"parent_id"`
				Flags            string         `json:"flags"`
				TraceParentError *string        `json:"traceparent_error"`
				TraceState       [][]string     `json:"tracestate"`
				TraceStateError  *string        `json:"tracestate_error"`
				ClockStatus      string         `json:"clock_status"`
				Clock            map[string]any `json:"clock"`
			} `json:"expected"`
		} `json:"cases"`
	}
	loadVectors(t, "propagation.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			h := http.Header{}
			for _, kv := range c.Headers {
				h.Add(kv[0], kv[1])
			}
			ex := Extract(h)
			e := c.Expected
			if got := map[bool]string{true: "continued", false: "new"}[ex.Continued]; got != e.Trace {
				t.Fatalf("trace %s, want %s", got, e.Trace)
			}
			if ex.Continued {
				if ex.TraceParent.TraceID.String() != e.TraceID || ex.TraceParent.ParentID.String() != e.ParentID ||
					FlagsHex(ex.TraceParent.Flags) != e.Flags {
					t.Fatalf("traceparent %+v", ex.TraceParent)
				}
			}
			if e.TraceParentError == nil && ex.TraceParentError != "" ||
				e.TraceParentError != nil && string(ex.TraceParentError) != *e.TraceParentError {
				t.Fatalf("traceparent_error %q, want %v", ex.TraceParentError, e.TraceParentError)
			}
			if e.TraceStateError == nil && ex.TraceStateError != "" ||
				e.TraceStateError != nil && string(ex.TraceStateError) != *e.TraceStateError {
				t.Fatalf("tracestate_error %q, want %v", ex.TraceStateError, e.TraceStateError)
			}
			got := [][]string{}
			for _, m := range ex.TraceState {
				got = append(got, []string{m.Key, m.Value})
			}
			if !reflect.DeepEqual(got, e.TraceState) {
				t.Fatalf("tracestate %q, want %q", got, e.TraceState)
			}
			if string(ex.ClockStatus) != e.ClockStatus {
				t.Fatalf("clock_status %s, want %s", ex.ClockStatus, e.ClockStatus)
			}
			if (ex.Clock == nil) != (e.Clock == nil) {
				t.Fatalf("clock presence %v, want %v", ex.Clock != nil, e.Clock != nil)
			}
			if ex.Clock != nil {
				gotC := roundJSON(t, ex.Clock.Canonical())
				if want := canon(roundJSON(t, e.Clock)); !reflect.DeepEqual(gotC, want) {
					t.Fatalf("clock\n got %v\nwant %v", gotC, want)
				}
			}
		})
	}
}
