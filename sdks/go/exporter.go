package raceway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxBodyBytes keeps every batch below 1 MiB.
const maxBodyBytes = 1<<20 - 1

type flushReq struct{ done chan struct{} }

type exporter struct {
	c        *Client
	url      string
	apiKey   string
	http     *http.Client
	queue    chan *Event
	flushCh  chan flushReq
	stopCh   chan struct{}
	doneCh   chan struct{}
	stopOnce sync.Once
	ctx      context.Context // cancelled when a shutdown deadline passes
	cancel   context.CancelFunc
}

func newExporter(c *Client, url, apiKey string) *exporter {
	hc := c.cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: c.cfg.ExportTimeout}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &exporter{
		c: c, url: url, apiKey: apiKey, http: hc,
		queue:   make(chan *Event, c.cfg.QueueCapacity),
		flushCh: make(chan flushReq),
		stopCh:  make(chan struct{}),
		doneCh:  make(chan struct{}),
		ctx:     ctx, cancel: cancel,
	}
	go e.run()
	return e
}

// enqueue never blocks: a full queue drops the event and counts it.
func (e *exporter) enqueue(ev *Event) {
	select {
	case e.queue <- ev:
	default:
		e.c.stats.eventsDropped.Add(1)
	}
}

func (e *exporter) run() {
	defer close(e.doneCh)
	ticker := time.NewTicker(e.c.cfg.FlushInterval)
	defer ticker.Stop()
	batch := make([]*Event, 0, e.c.cfg.BatchSize)
	send := func() {
		if len(batch) > 0 {
			e.sendBatch(batch)
			batch = make([]*Event, 0, e.c.cfg.BatchSize)
		}
	}
	drain := func() {
		for {
			select {
			case ev := <-e.queue:
				batch = append(batch, ev)
				if len(batch) >= e.c.cfg.BatchSize {
					send()
				}
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case ev := <-e.queue:
			batch = append(batch, ev)
			if len(batch) >= e.c.cfg.BatchSize {
				send()
			}
		case <-ticker.C:
			send()
		case req := <-e.flushCh:
			drain()
			close(req.done)
		case <-e.stopCh:
			drain()
			return
		}
	}
}

func (e *exporter) flush(ctx context.Context) error {
	req := flushReq{done: make(chan struct{})}
	select {
	case e.flushCh <- req:
	case <-e.doneCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *exporter) shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stopCh) })
	select {
	case <-e.doneCh:
		e.cancel()
		return nil
	case <-ctx.Done():
		// abort in-flight requests and backoff waits; remaining events are dropped
		e.cancel()
		<-e.doneCh
		return ctx.Err()
	}
}

// sendBatch splits evs into bodies below 1 MiB and posts each.
func (e *exporter) sendBatch(evs []*Event) {
	body, err := encodeBatch(evs)
	if err != nil {
		// an unencodable value in one event: encode events one by one and skip the bad ones
		good := evs[:0:0]
		for _, ev := range evs {
			if _, err := json.Marshal(ev); err == nil {
				good = append(good, ev)
			} else {
				e.c.stats.eventsDropped.Add(1)
			}
		}
		if len(good) == 0 {
			return
		}
		evs = good
		if body, err = encodeBatch(evs); err != nil {
			e.c.stats.eventsDropped.Add(uint64(len(evs)))
			return
		}
	}
	if len(body) > maxBodyBytes {
		if len(evs) == 1 {
			e.c.stats.eventsDropped.Add(1)
			e.c.stats.batchesFailed.Add(1)
			return
		}
		half := len(evs) / 2
		e.sendBatch(evs[:half])
		e.sendBatch(evs[half:])
		return
	}
	e.post(body, len(evs))
}

// post sends one body with retries (connection errors, 5xx, 429; Retry-After honoured).
// A 4xx other than 408/429 drops the batch.
func (e *exporter) post(body []byte, n int) {
	for attempt := 0; ; attempt++ {
		status, retryAfter, err := e.postOnce(body)
		switch {
		case err == nil && status >= 200 && status < 300:
			e.c.stats.eventsSent.Add(uint64(n))
			e.c.stats.batchesSent.Add(1)
			return
		case err == nil && status >= 400 && status < 500 && status != 429 && status != 408:
			e.c.log.Warn("raceway: backend rejected a batch", "status", status, "events", n)
			e.fail(n)
			return
		}
		if attempt >= e.c.cfg.MaxRetries || e.ctx.Err() != nil {
			e.c.log.Warn("raceway: dropping a batch after retries", "status", status, "error", err, "events", n)
			e.fail(n)
			return
		}
		e.c.stats.retries.Add(1)
		delay := e.backoff(attempt)
		if retryAfter > 0 {
			delay = retryAfter
			if delay > e.c.cfg.RetryMaxDelay*3 {
				delay = e.c.cfg.RetryMaxDelay * 3
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
			e.fail(n)
			return
		}
	}
}

func (e *exporter) fail(n int) {
	e.c.stats.batchesFailed.Add(1)
	e.c.stats.eventsDropped.Add(uint64(n))
}

// backoff is exponential with full jitter in [d/2, d].
func (e *exporter) backoff(attempt int) time.Duration {
	d := e.c.cfg.RetryBaseDelay << min(attempt, 20)
	if d <= 0 || d > e.c.cfg.RetryMaxDelay {
		d = e.c.cfg.RetryMaxDelay
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (e *exporter) postOnce(body []byte) (status int, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "raceway-go")
	if e.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.apiKey)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")), nil
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
