// Package bench compares the Raceway Go SDK with OpenTelemetry's TraceContext
// propagator in the same run. It is a separate module so that the SDK's go.mod
// does not depend on OpenTelemetry.
package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	. "github.com/raceway-dev/raceway/sdks/go"
	rprop "github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

const (
	benchTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	benchTS = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

var spanCounter uint64

// nextSpanID stands in for the SDK's random span ids (8 bytes, never zero).
func nextSpanID() rprop.SpanID {
	spanCounter++
	var id rprop.SpanID
	for i := 0; i < 8; i++ {
		id[i] = byte(spanCounter >> (56 - 8*i))
	}
	return id
}

func benchClockHeader(b *testing.B) string {
	tid, _ := rprop.ParseTraceID("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := rprop.ParseSpanID("00f067aa0ba902b7")
	pid, _ := rprop.ParseSpanID("a3ce929d0e0e4736")
	h, err := rprop.EncodeClock(&rprop.ClockPayload{TraceID: tid, SpanID: sid, ParentSpanID: pid, Service: "checkout",
		Instance: "checkout-1", Clock: []vclock.Entry{{Key: "checkout#checkout-1", Counter: 5}, {Key: "gateway#gw-1", Counter: 3}}})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

func incomingHeaders(withTS, withClock bool, clock string) http.Header {
	h := http.Header{}
	h.Set("Traceparent", benchTP)
	if withTS {
		h.Set("Tracestate", benchTS)
	}
	if withClock {
		h.Set("Raceway-Clock", clock)
	}
	return h
}

// Extract side by side: OTel's TraceContext{} vs Raceway's W3C part vs Raceway with raceway-clock.
func BenchmarkExtract(b *testing.B) {
	clock := benchClockHeader(b)
	otel := propagation.TraceContext{}
	ctx := context.Background()
	b.Run("otel-tracecontext/traceparent", func(b *testing.B) {
		h := incomingHeaders(false, false, "")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = otel.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("raceway/traceparent", func(b *testing.B) {
		h := incomingHeaders(false, false, "")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = rprop.Extract(h)
		}
	})
	b.Run("otel-tracecontext/traceparent+tracestate", func(b *testing.B) {
		h := incomingHeaders(true, false, "")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = otel.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("raceway/traceparent+tracestate", func(b *testing.B) {
		h := incomingHeaders(true, false, "")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = rprop.Extract(h)
		}
	})
	b.Run("raceway/all-three-headers", func(b *testing.B) {
		h := incomingHeaders(true, true, clock)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = rprop.Extract(h)
		}
	})
}

// Inject into a fresh header map for an outgoing call.
func BenchmarkInject(b *testing.B) {
	otel := propagation.TraceContext{}
	ts, _ := trace.ParseTraceState(benchTS)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0, 0xf0, 1},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	tid, _ := rprop.ParseTraceID("4bf92f3577b34da6a3ce929d0e0e4736")
	own, _ := rprop.ParseSpanID("a3ce929d0e0e4736")
	members, _, _ := rprop.ParseTraceState([]string{benchTS})
	clock := vclock.FromEntries([]vclock.Entry{{Key: "checkout#checkout-1", Counter: 5}, {Key: "gateway#gw-1", Counter: 3}})
	b.Run("otel-tracecontext/traceparent+tracestate", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h := http.Header{}
			otel.Inject(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("raceway/traceparent+tracestate", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h := http.Header{}
			child := nextSpanID()
			h.Set(rprop.HeaderTraceParent, rprop.FormatTraceParent(tid, child, 0x01))
			h.Set(rprop.HeaderTraceState, rprop.InjectTraceState(members, child.String()))
		}
	})
	b.Run("raceway/all-three-headers", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h := http.Header{}
			child := nextSpanID()
			h.Set(rprop.HeaderTraceParent, rprop.FormatTraceParent(tid, child, 0x01))
			h.Set(rprop.HeaderTraceState, rprop.InjectTraceState(members, child.String()))
			v, err := rprop.EncodeClock(&rprop.ClockPayload{TraceID: tid, SpanID: child, ParentSpanID: own,
				Service: "checkout", Instance: "checkout-1", Clock: clock.Entries()})
			if err != nil {
				b.Fatal(err)
			}
			h.Set(rprop.HeaderRacewayClock, v)
		}
	})
}

// Event capture: one recorded event on a request context. The OTel column is a
// span event (AddEvent) on a recording SDK span, the closest OTel operation.
func BenchmarkEventCapture(b *testing.B) {
	b.Run("otel-sdk/span.AddEvent", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanLimits(sdktrace.SpanLimits{EventCountLimit: -1, AttributeCountLimit: -1,
				AttributeValueLengthLimit: -1, AttributePerEventCountLimit: -1, LinkCountLimit: -1,
				AttributePerLinkCountLimit: -1}))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		ctx, span := tp.Tracer("bench").Start(context.Background(), "req")
		_ = ctx
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			span.AddEvent("state_change", trace.WithAttributes(attribute.String("variable", "account:42"),
				attribute.String("access", "write"), attribute.Int("old_value", i), attribute.Int("new_value", i+1)))
			if i%1000 == 999 { // keep memory bounded like a real span would
				b.StopTimer()
				span.End()
				ctx, span = tp.Tracer("bench").Start(context.Background(), "req")
				b.StartTimer()
			}
		}
		span.End()
	})
	b.Run("raceway/propagation-only", func(b *testing.B) {
		c, _ := New(Config{ServiceName: "bench", InstanceID: "b"})
		ctx, end := c.StartSpan(context.Background(), "req")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			StateChange(ctx, "account:42", Write, i, i+1)
		}
		b.StopTimer()
		end(nil)
	})
	b.Run("raceway/capture-and-enqueue", func(b *testing.B) {
		// the caller-side cost only: a blocked backend and a small queue, so every
		// event is fully built and offered to the queue, and the sender stays idle
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
		defer srv.Close()
		defer close(block)
		c, _ := New(Config{ServiceName: "bench", InstanceID: "b", Endpoint: srv.URL, QueueCapacity: 1000, BatchSize: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		ctx, end := c.StartSpan(context.Background(), "req")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			StateChange(ctx, "account:42", Write, i, i+1)
		}
		b.StopTimer()
		end(nil)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_ = c.Shutdown(sctx)
	})
	b.Run("raceway/with-exporter-end-to-end", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		defer srv.Close()
		c, _ := New(Config{ServiceName: "bench", InstanceID: "b", Endpoint: srv.URL, QueueCapacity: 1 << 20, BatchSize: 1000})
		ctx, end := c.StartSpan(context.Background(), "req")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			StateChange(ctx, "account:42", Write, i, i+1)
		}
		b.StopTimer()
		end(nil)
		_ = c.Shutdown(context.Background())
	})
}

// Whole server-side overhead per request (in-process, no network): bare handler vs middleware.
func BenchmarkMiddleware(b *testing.B) {
	clock := benchClockHeader(b)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	run := func(b *testing.B, h http.Handler) {
		req := httptest.NewRequest(http.MethodGet, "/items/1", nil)
		req.Header = incomingHeaders(true, true, clock)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, handler) })
	b.Run("raceway/propagation-only", func(b *testing.B) {
		c, _ := New(Config{ServiceName: "bench", InstanceID: "b"})
		run(b, c.Middleware(handler))
	})
}
