package raceway

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// recordN records n custom events on a fresh span and returns how long capture took.
func recordN(c *Client, n int, data any) time.Duration {
	ctx, end := c.StartSpan(context.Background(), "load")
	start := time.Now()
	for i := 0; i < n-2; i++ {
		Custom(ctx, "e", data)
	}
	end(nil)
	return time.Since(start)
}

func closedPortURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestExporterBackendDown(t *testing.T) {
	c := newTestClient(t, Config{Endpoint: closedPortURL(t), MaxRetries: 2, RetryBaseDelay: 5 * time.Millisecond,
		FlushInterval: 10 * time.Millisecond})
	if d := recordN(c, 1000, nil); d > 2*time.Second {
		t.Fatalf("capturing 1000 events took %v with the backend down", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("shutdown overran its deadline")
	}
	st := c.Stats()
	if st.EventsSent != 0 || st.EventsDropped != 1000 || st.BatchesFailed == 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
	// after shutdown, recording never blocks and is counted as dropped
	recordN(c, 10, nil)
	if c.Stats().EventsDropped != 1010 {
		t.Fatalf("stats after shutdown %+v", c.Stats())
	}
}

func TestExporterSlowBackend(t *testing.T) {
	col := newCollector(t)
	col.set(func(c *collector) { c.delay = 5 * time.Second })
	c := newTestClient(t, Config{Endpoint: col.srv.URL, FlushInterval: 10 * time.Millisecond, BatchSize: 10})
	if d := recordN(c, 500, nil); d > 2*time.Second {
		t.Fatalf("capture took %v with a slow backend", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Shutdown(ctx)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("shutdown took %v past a 300ms deadline", el)
	}
	if err == nil {
		t.Fatal("shutdown should report its deadline")
	}
	if st := c.Stats(); st.EventsSent != 0 || st.EventsDropped == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExporterRejectingBatchIsNotRetried(t *testing.T) {
	col := newCollector(t)
	col.set(func(c *collector) { c.status = 400 })
	c := newTestClient(t, Config{Endpoint: col.srv.URL, BatchSize: 50, RetryBaseDelay: time.Millisecond})
	recordN(c, 50, nil)
	flush(t, c)
	st := c.Stats()
	if col.batchCount() != 1 || st.Retries != 0 || st.BatchesFailed != 1 || st.EventsDropped != 50 || st.EventsSent != 0 {
		t.Fatalf("batches %d stats %+v", col.batchCount(), st)
	}
}

func TestExporterRetries5xx(t *testing.T) {
	col := newCollector(t)
	col.set(func(c *collector) {
		c.respond = func(n int) (int, map[string]string) {
			if n <= 2 {
				return 500, nil
			}
			return 200, nil
		}
	})
	c := newTestClient(t, Config{Endpoint: col.srv.URL, BatchSize: 100, RetryBaseDelay: 5 * time.Millisecond})
	recordN(c, 30, nil)
	flush(t, c)
	st := c.Stats()
	if col.batchCount() != 3 || st.Retries != 2 || st.EventsSent != 30 || st.BatchesFailed != 0 || len(col.all()) != 30 {
		t.Fatalf("batches %d stats %+v", col.batchCount(), st)
	}
}

func TestExporterHonoursRetryAfter(t *testing.T) {
	col := newCollector(t)
	col.set(func(c *collector) {
		c.respond = func(n int) (int, map[string]string) {
			if n == 1 {
				return 429, map[string]string{"Retry-After": "1"}
			}
			return 200, nil
		}
	})
	c := newTestClient(t, Config{Endpoint: col.srv.URL, RetryBaseDelay: time.Millisecond})
	recordN(c, 5, nil)
	flush(t, c)
	col.mu.Lock()
	times := append([]time.Time(nil), col.times...)
	col.mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d requests", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v despite Retry-After: 1", gap)
	}
	if c.Stats().EventsSent != 5 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

func TestExporterQueueFullDrops(t *testing.T) {
	col := newCollector(t)
	col.set(func(c *collector) { c.delay = 5 * time.Second })
	c := newTestClient(t, Config{Endpoint: col.srv.URL, QueueCapacity: 10, BatchSize: 5, FlushInterval: time.Millisecond})
	if d := recordN(c, 300, nil); d > 2*time.Second {
		t.Fatalf("capture blocked: %v", d)
	}
	if st := c.Stats(); st.EventsDropped < 250 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExporterBatchesStayBelowLimits(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{Endpoint: col.srv.URL, BatchSize: 7, FlushInterval: time.Hour})
	recordN(c, 50, nil)
	flush(t, c)
	col.mu.Lock()
	sizes := append([]int(nil), col.sizes...)
	col.mu.Unlock()
	total := 0
	for _, s := range sizes {
		if s > 7 {
			t.Fatalf("batch of %d events", s)
		}
		total += s
	}
	if total != 50 {
		t.Fatalf("%d events delivered", total)
	}
	// 12 events of ~200 KB: bodies must be split below 1 MiB (the collector checks)
	col2 := newCollector(t)
	c2 := newTestClient(t, Config{Endpoint: col2.srv.URL, FlushInterval: time.Hour})
	recordN(c2, 14, strings.Repeat("x", 200<<10))
	flush(t, c2)
	if n := len(col2.all()); n != 14 || col2.batchCount() < 3 {
		t.Fatalf("%d events in %d batches", n, col2.batchCount())
	}
}

func TestExporterDropsOnlyUnencodableEvents(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{Endpoint: col.srv.URL, FlushInterval: time.Hour})
	ctx, end := c.StartSpan(context.Background(), "job")
	Custom(ctx, "ok", map[string]any{"n": 1})
	Custom(ctx, "bad", make(chan int)) // not JSON-encodable
	Custom(ctx, "ok2", []string{"a"})
	end(nil)
	flush(t, c)
	evs := col.all()
	if len(evs) != 4 || c.Stats().EventsDropped != 1 || c.Stats().EventsSent != 4 {
		t.Fatalf("%d events, stats %+v", len(evs), c.Stats())
	}
}

func TestExporterFlushAndShutdownIdempotent(t *testing.T) {
	col := newCollector(t)
	c := newTestClient(t, Config{Endpoint: col.srv.URL, FlushInterval: time.Hour})
	recordN(c, 3, nil)
	ctx := context.Background()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(col.all()) != 3 {
		t.Fatalf("shutdown must drain the queue: %d events", len(col.all()))
	}
}
