package raceway

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/raceway-dev/raceway/sdks/go/propagation"
	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// span holds the immutable identity of one request span.
type span struct {
	client       *Client
	traceID      propagation.TraceID
	traceUUID    string
	spanID       propagation.SpanID
	spanHex      string
	parentSpanID propagation.SpanID // upstream call id; zero = none
	parentHex    *string
	upstreamID   propagation.SpanID // the received traceparent parent-id; zero = none
	flags        byte
	traceState   []propagation.Member
	clockStatus  propagation.ClockStatus
	// wireFlags go into every raceway-clock this span sends (["partial"] when the
	// traceparent arrived without its raceway-clock: header loss upstream).
	wireFlags []string
}

// thread is one logical thread: the request's main flow or a forked goroutine.
// Its fields are guarded by mu so that misuse (sharing a ctx between goroutines
// without Fork) stays memory-safe.
type thread struct {
	mu       sync.Mutex
	span     *span
	id       string
	seq      uint64
	clock    *vclock.Clock
	locks    []LockHeld
	children int
}

type ctxKey struct{}

func withThread(ctx context.Context, t *thread) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

func threadFrom(ctx context.Context) *thread {
	if ctx == nil {
		return nil
	}
	t, _ := ctx.Value(ctxKey{}).(*thread)
	return t
}

// SpanContext is a snapshot of the Raceway context of a ctx.
type SpanContext struct {
	TraceID string // 32 hex
	SpanID  string // 16 hex, own span
	// ParentSpanID is the upstream call id ("" when none): the received parent-id,
	// or the clock's span id when the clock status is "reparented".
	ParentSpanID string
	// UpstreamParentID is the parent-id of the received traceparent ("" when none).
	UpstreamParentID string
	ThreadID         string
	Seq              uint64 // number of events recorded so far on this thread
	Flags            byte
	TraceState       []propagation.Member
	ClockStatus      propagation.ClockStatus
	Clock            []vclock.Entry
	LocksHeld        []LockHeld
	Service          string
	Instance         string
}

// FromContext returns the Raceway context carried by ctx, if any.
func FromContext(ctx context.Context) (SpanContext, bool) {
	t := threadFrom(ctx)
	if t == nil {
		return SpanContext{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.span
	sc := SpanContext{
		TraceID:     s.traceID.String(),
		SpanID:      s.spanHex,
		ThreadID:    t.id,
		Seq:         t.seq,
		Flags:       s.flags,
		TraceState:  append([]propagation.Member(nil), s.traceState...),
		ClockStatus: s.clockStatus,
		Clock:       t.clock.Entries(),
		LocksHeld:   append([]LockHeld{}, t.locks...),
		Service:     s.client.service,
		Instance:    s.client.instance,
	}
	if !s.parentSpanID.IsZero() {
		sc.ParentSpanID = s.parentSpanID.String()
	}
	if !s.upstreamID.IsZero() {
		sc.UpstreamParentID = s.upstreamID.String()
	}
	return sc, true
}

func randomSpanID() propagation.SpanID {
	for {
		var id propagation.SpanID
		v := rand.Uint64()
		for i := 0; i < 8; i++ {
			id[i] = byte(v >> (56 - 8*i))
		}
		if !id.IsZero() {
			return id
		}
	}
}

func randomTraceID() propagation.TraceID {
	for {
		var id propagation.TraceID
		a, b := rand.Uint64(), rand.Uint64()
		for i := 0; i < 8; i++ {
			id[i] = byte(a >> (56 - 8*i))
			id[8+i] = byte(b >> (56 - 8*i))
		}
		if !id.IsZero() {
			return id
		}
	}
}

func newUUID() string {
	var u [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (56 - 8*i))
		u[8+i] = byte(b >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return propagation.TraceID(u).UUID()
}

func newSpan(c *Client, traceID propagation.TraceID, spanID propagation.SpanID) *span {
	return &span{client: c, traceID: traceID, traceUUID: traceID.UUID(), spanID: spanID, spanHex: hex.EncodeToString(spanID[:])}
}

func (s *span) setParent(p propagation.SpanID) {
	s.parentSpanID = p
	if !p.IsZero() {
		h := p.String()
		s.parentHex = &h
	}
}

// StartSpan starts a new trace (no upstream) with its own context, for work that
// does not come from an HTTP request (jobs, CLI commands). end records span_end.
func (c *Client) StartSpan(ctx context.Context, operation string) (context.Context, func(err error)) {
	s := newSpan(c, randomTraceID(), randomSpanID())
	s.flags = propagation.FlagSampled | propagation.FlagRandom
	s.clockStatus = propagation.ClockStatusAbsent
	t := &thread{span: s, id: s.spanHex, clock: vclock.New()}
	start := time.Now()
	loc := callerLocation(2)
	t.record(kindSpanStart(operation, "internal", nil, nil), nil, loc)
	return withThread(ctx, t), func(err error) {
		d := uint64(time.Since(start))
		k := map[string]any{"type": "span_end", "operation": operation, "error": err != nil}
		t.record(k, &d, loc)
	}
}

// Fork gives a goroutine its own logical thread: it records async_spawn on the
// current thread and returns the child's ctx (thread id "<parent>.<n>", seq from 0,
// a copy of the clock). join, called on the parent after the child finished,
// records async_await and merges the child's clock. Outside a Raceway context,
// Fork returns ctx and a no-op join.
func Fork(ctx context.Context) (child context.Context, join func()) {
	return fork(ctx, callerLocation(2))
}

func fork(ctx context.Context, loc string) (child context.Context, join func()) {
	parent := threadFrom(ctx)
	if parent == nil {
		return ctx, func() {}
	}
	parent.mu.Lock()
	parent.children++
	childID := parent.id + "." + strconv.Itoa(parent.children)
	parent.recordLocked(map[string]any{"type": "async_spawn", "child_thread_id": childID}, nil, loc)
	ct := &thread{span: parent.span, id: childID, clock: parent.clock.Clone()}
	parent.mu.Unlock()
	var once sync.Once
	return withThread(ctx, ct), func() {
		once.Do(func() {
			ct.mu.Lock()
			childClock := ct.clock.Clone()
			ct.mu.Unlock()
			parent.mu.Lock()
			parent.clock.MergeClock(childClock)
			parent.recordLocked(map[string]any{"type": "async_await", "child_thread_id": childID}, nil, loc)
			parent.mu.Unlock()
		})
	}
}

// Go runs fn in a new goroutine on its own logical thread (see Fork). The returned
// wait function blocks until fn returned, then records async_await on the parent
// and merges the child's clock. Call it from the parent's goroutine.
func Go(ctx context.Context, fn func(ctx context.Context)) (wait func()) {
	child, join := fork(ctx, callerLocation(2))
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(child)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			<-done
			join()
		})
	}
}

// exporting reports whether events are built and queued (else only ticks happen).
func (t *thread) exporting() bool { return t.span.client.exporter != nil }

// record ticks the own component, assigns the next seq and queues the event.
// loc is the caller's source location ("" = none).
func (t *thread) record(kind map[string]any, duration *uint64, loc string) {
	t.mu.Lock()
	t.recordLocked(kind, duration, loc)
	t.mu.Unlock()
}

func (t *thread) recordLocked(kind map[string]any, duration *uint64, loc string) {
	c := t.span.client
	now := time.Now()
	t.clock.TickAt(c.ownKey, now)
	if n := t.clock.Bound(c.cfg.MaxClockComponents, c.ownKey, c.cfg.ClockComponentTTL, now); n > 0 {
		c.stats.componentsDropped.Add(uint64(n))
	}
	seq := t.seq
	t.seq++
	c.stats.eventsRecorded.Add(1)
	if c.exporter == nil {
		return
	}
	if c.closed.Load() {
		c.stats.eventsDropped.Add(1)
		return
	}
	ev := &Event{
		ID:           newUUID(),
		TraceID:      t.span.traceUUID,
		SpanID:       t.span.spanHex,
		ParentSpanID: t.span.parentHex,
		ThreadID:     t.id,
		Seq:          seq,
		Service:      c.service,
		Instance:     c.instance,
		at:           now,
		DurationNS:   duration,
		VectorClock:  t.clock.Entries(),
		LocksHeld:    append(make([]LockHeld, 0, len(t.locks)), t.locks...),
		Location:     loc,
		Kind:         kind,
	}
	c.exporter.enqueue(ev)
}
