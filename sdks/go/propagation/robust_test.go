package propagation

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

func samplePayload() *ClockPayload {
	tid, _ := ParseTraceID("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := ParseSpanID("00f067aa0ba902b7")
	pid, _ := ParseSpanID("a3ce929d0e0e4736")
	return &ClockPayload{TraceID: tid, SpanID: sid, ParentSpanID: pid, Service: "checkout", Instance: "checkout-1",
		Clock: []vclock.Entry{{Key: "checkout#checkout-1", Counter: 5}, {Key: "gateway#gw-1", Counter: 3}}}
}

func allocDuring(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// A frame that expands far beyond 64 KiB is refused after at most that much work.
func TestZstdBombCostsLittle(t *testing.T) {
	big := bytes.Repeat([]byte{' '}, 50<<20) // 50 MiB of spaces
	for _, cs := range []bool{true, false} {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithSingleSegment(cs),
			zstd.WithWindowSize(8<<20))
		z := enc.EncodeAll(append([]byte(`{"pad":"`), big...), nil)
		h := "v1;" + base64.RawURLEncoding.EncodeToString(z)
		if len(h) > MaxClockHeaderBytes {
			// keep the bomb inside the header bound so it reaches the decompressor
			z = z[:0]
			enc2, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithSingleSegment(cs))
			z = enc2.EncodeAll(append([]byte(`{"pad":"`), bytes.Repeat([]byte{' '}, 4<<20)...), nil)
			h = "v1;" + base64.RawURLEncoding.EncodeToString(z)
		}
		if len(h) > MaxClockHeaderBytes {
			t.Fatalf("bomb header too long to test: %d", len(h))
		}
		DecodeClock(h) // warm pools
		var kind ClockError
		var took time.Duration
		alloc := allocDuring(func() {
			start := time.Now()
			_, kind = DecodeClock(h)
			took = time.Since(start)
		})
		if kind != ClockTooLarge {
			t.Fatalf("content size %v: got %q, want too_large", cs, kind)
		}
		if alloc > 2<<20 {
			t.Fatalf("content size %v: decoding a bomb allocated %d bytes", cs, alloc)
		}
		if took > 200*time.Millisecond {
			t.Fatalf("bomb took %v", took)
		}
	}
}

func TestHugeWindowFrameIsRejectedCheaply(t *testing.T) {
	// frame header: no single segment, window descriptor exponent 31 (2 GiB window), then garbage
	raw := append([]byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xF8}, []byte("garbage-garbage")...)
	h := "v1;" + base64.RawURLEncoding.EncodeToString(raw)
	alloc := allocDuring(func() {
		if _, kind := DecodeClock(h); kind != ClockMalformed && kind != ClockTooLarge {
			t.Fatalf("got %q", kind)
		}
	})
	if alloc > 1<<20 {
		t.Fatalf("allocated %d bytes", alloc)
	}
}

func TestEncodeBounds(t *testing.T) {
	p := samplePayload()
	p.Clock = nil
	for i := 0; i < MaxClockComponents+1; i++ {
		p.Clock = append(p.Clock, vclock.Entry{Key: strings.Repeat("k", 200) + string(rune('a'+i%26)) + string(rune(0x4e00+i)), Counter: uint64(i)})
	}
	if _, err := EncodeClock(p); err != ClockTooManyComponents {
		t.Fatalf("got %v", err)
	}
	p.Clock = p.Clock[:MaxClockComponents]
	// 256 incompressible-ish keys of ~200 bytes may exceed 8192 bytes: must fail cleanly, never panic
	if h, err := EncodeClock(p); err == nil && len(h) > MaxClockHeaderBytes {
		t.Fatalf("header of %d bytes", len(h))
	}
	p = samplePayload()
	p.Service = ""
	if _, err := EncodeClock(p); err == nil {
		t.Fatal("empty service must not encode")
	}
}

func TestEncodeEscapesJSON(t *testing.T) {
	p := samplePayload()
	p.Service = "a\"b\\c\n\x01\xff注"
	h, err := EncodeClock(p)
	if err != nil {
		t.Fatal(err)
	}
	back, kind := DecodeClock(h)
	if kind != "" {
		t.Fatalf("decode: %s", kind)
	}
	if back.Service != "a\"b\\c\n\x01\uFFFD注" {
		t.Fatalf("service %q", back.Service)
	}
}

func TestExtractNeverPanicsOnHostileHeaders(t *testing.T) {
	hostile := []string{"", " ", "\x00", strings.Repeat("a", 100000), strings.Repeat(",", 10000),
		"v1;" + strings.Repeat("A", 20000), "v999;x", "v1;KLUv_Q", "00-" + strings.Repeat("f", 200)}
	for _, v := range hostile {
		h := http.Header{}
		h.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		h.Add("tracestate", v)
		h.Add("raceway-clock", v)
		start := time.Now()
		ex := Extract(h)
		if !ex.Continued {
			t.Fatal("hostile tracestate/clock must not affect traceparent")
		}
		if time.Since(start) > time.Second {
			t.Fatalf("slow on %.20q", v)
		}
		h.Set("traceparent", v)
		_ = Extract(h)
	}
}

func FuzzTraceParent(f *testing.F) {
	for _, s := range []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "ff-", "", " \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, _, ok := ParseTraceParentValue(s)
		if !ok {
			return
		}
		if tp.TraceID.IsZero() || tp.ParentID.IsZero() || tp.Flags&^0x03 != 0 {
			t.Fatalf("accepted invalid %q", s)
		}
		back, _, ok := ParseTraceParentValue(FormatTraceParent(tp.TraceID, tp.ParentID, tp.Flags))
		if !ok || back != tp {
			t.Fatalf("reinjection of %q does not parse back", s)
		}
	})
}

func FuzzTraceState(f *testing.F) {
	for _, s := range []string{"rojo=1,congo=2", "a@b=x", ",,,", "k=v ", "raceway=00f067aa0ba902b7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		members, _, ok := ParseTraceState([]string{s})
		if !ok {
			return
		}
		out := InjectTraceState(members, "00f067aa0ba902b7")
		again, kind, ok := ParseTraceState([]string{out})
		if !ok || len(again) == 0 || again[0].Key != RacewayKey || len(again) > MaxTraceStateMembers {
			t.Fatalf("mutated %q -> %q does not parse (%s)", s, out, kind)
		}
	})
}

func FuzzDecodeClock(f *testing.F) {
	h, _ := EncodeClock(samplePayload())
	for _, s := range []string{h, "v1;", "v2;AAAA", "v1;eyJ9", "v1;KLUv_QBnYXJiYWdl"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, kind := DecodeClock(s)
		if kind != "" {
			return
		}
		h, err := EncodeClock(p)
		if err != nil {
			t.Fatalf("decoded payload does not re-encode: %v", err)
		}
		back, kind := DecodeClock(h)
		if kind != "" || back.TraceID != p.TraceID || len(back.Clock) != len(p.Clock) {
			t.Fatalf("re-encode roundtrip failed: %s", kind)
		}
	})
}
