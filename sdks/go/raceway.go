// Package raceway is the Go SDK of Raceway, a causality-tracing product
// (cross-service race detection and critical-path analysis).
//
// A Client provides net/http server middleware (Client.Middleware), client
// propagation (Client.Transport / Client.HTTPClient), a per-request context
// carried in context.Context, goroutine fork/join helpers (Fork, Go), a tracking
// API (StateChange, TrackFunction, Mutex, RWMutex, RecordError, Custom) and a
// background exporter posting events to <endpoint>/v1/events.
//
// The zero Config works: without an endpoint the client runs in
// propagation-only mode (headers are extracted and injected, no events are sent).
package raceway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultBatchSize          = 100
	DefaultFlushInterval      = time.Second
	DefaultQueueCapacity      = 10000
	DefaultMaxClockComponents = 64
	DefaultClockComponentTTL  = 15 * time.Minute
	DefaultExportTimeout      = 10 * time.Second
	DefaultMaxRetries         = 5
	DefaultServiceName        = "unknown_service"
)

// Config configures a Client. Every field is optional.
type Config struct {
	// ServiceName (default: env RACEWAY_SERVICE, else "unknown_service").
	ServiceName string
	// InstanceID (default: env RACEWAY_INSTANCE_ID, else "<hostname>-<pid>").
	InstanceID string
	// Endpoint of the Raceway backend, e.g. "http://127.0.0.1:8080" (default: env
	// RACEWAY_ENDPOINT). Empty = propagation-only, no exporter.
	Endpoint string
	// APIKey sent as "Authorization: Bearer <key>" (default: env RACEWAY_API_KEY).
	APIKey string
	// DisablePropagation makes the middleware and the transport pass requests
	// through untouched (propagation_enabled = false).
	DisablePropagation bool
	// PropagationHeadersDebug logs received and sent propagation headers and
	// header errors through Logger (at Info level, so the default handler shows them).
	PropagationHeadersDebug bool
	// DisableTraceStateEntry stops adding raceway=<span> to tracestate (tracestate_entry = false).
	DisableTraceStateEntry bool
	// BatchSize is the maximum number of events per POST (default 100).
	BatchSize int
	// FlushInterval between background sends (default 1s).
	FlushInterval time.Duration
	// QueueCapacity of the in-memory event queue (default 10,000); when full, events are dropped.
	QueueCapacity int
	// MaxClockComponents kept in the clock a request sends (default 64).
	MaxClockComponents int
	// ClockComponentTTL after which a component not advanced is dropped first (default 15 min).
	ClockComponentTTL time.Duration
	// ExportTimeout of one POST (default 10s).
	ExportTimeout time.Duration
	// MaxRetries of a batch on connection errors, 5xx and 429 (default 5; negative = no retry).
	MaxRetries int
	// RetryBaseDelay of the exponential backoff (default 100ms); RetryMaxDelay caps it (default 10s).
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// HTTPClient used by the exporter (default: a client with ExportTimeout).
	HTTPClient *http.Client
}

// Client is a Raceway SDK instance. It is safe for concurrent use.
type Client struct {
	cfg      Config
	service  string
	instance string
	ownKey   string
	log      *slog.Logger
	exporter *exporter
	stats    counters
	closed   atomic.Bool
}

type counters struct {
	eventsRecorded    atomic.Uint64
	eventsSent        atomic.Uint64
	eventsDropped     atomic.Uint64
	batchesSent       atomic.Uint64
	batchesFailed     atomic.Uint64
	retries           atomic.Uint64
	headerParseErrors atomic.Uint64
	traceParentErrors atomic.Uint64
	traceStateErrors  atomic.Uint64
	clockErrors       atomic.Uint64
	clockConflicts    atomic.Uint64
	clockPartial      atomic.Uint64
	componentsDropped atomic.Uint64
	injectErrors      atomic.Uint64
	requests          atomic.Uint64
	outboundCalls     atomic.Uint64
}

// Stats is a snapshot of the client's counters.
type Stats struct {
	EventsRecorded uint64 `json:"events_recorded"`
	EventsSent     uint64 `json:"events_sent"`
	EventsDropped  uint64 `json:"events_dropped"`
	BatchesSent    uint64 `json:"batches_sent"`
	BatchesFailed  uint64 `json:"batches_failed"`
	Retries        uint64 `json:"retries"`
	QueueLength    int    `json:"queue_length"`
	// HeaderParseErrors counts invalid traceparent, tracestate and raceway-clock headers.
	HeaderParseErrors uint64 `json:"header_parse_errors"`
	TraceParentErrors uint64 `json:"traceparent_errors"`
	TraceStateErrors  uint64 `json:"tracestate_errors"`
	ClockErrors       uint64 `json:"clock_errors"`
	ClockConflicts    uint64 `json:"clock_conflicts"`
	// ClockPartial counts requests with a valid traceparent but no raceway-clock.
	ClockPartial      uint64 `json:"clock_partial"`
	ComponentsDropped uint64 `json:"clock_components_dropped"`
	InjectErrors      uint64 `json:"inject_errors"`
	Requests          uint64 `json:"requests"`
	OutboundCalls     uint64 `json:"outbound_calls"`
}

// New creates a client. It never fails on a zero Config; it returns an error only
// for an Endpoint that is not an absolute http(s) URL.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg}
	c.service = firstNonEmpty(cfg.ServiceName, os.Getenv("RACEWAY_SERVICE"), DefaultServiceName)
	c.instance = firstNonEmpty(cfg.InstanceID, os.Getenv("RACEWAY_INSTANCE_ID"), defaultInstance())
	c.service = truncateUTF8(c.service, 256)
	c.instance = truncateUTF8(c.instance, 256)
	c.ownKey = c.service + "#" + c.instance
	if cfg.Logger != nil {
		c.log = cfg.Logger
	} else {
		c.log = slog.Default()
	}
	if c.cfg.BatchSize <= 0 {
		c.cfg.BatchSize = DefaultBatchSize
	}
	if c.cfg.FlushInterval <= 0 {
		c.cfg.FlushInterval = DefaultFlushInterval
	}
	if c.cfg.QueueCapacity <= 0 {
		c.cfg.QueueCapacity = DefaultQueueCapacity
	}
	if c.cfg.MaxClockComponents <= 0 {
		c.cfg.MaxClockComponents = DefaultMaxClockComponents
	}
	if c.cfg.ClockComponentTTL <= 0 {
		c.cfg.ClockComponentTTL = DefaultClockComponentTTL
	}
	if c.cfg.ExportTimeout <= 0 {
		c.cfg.ExportTimeout = DefaultExportTimeout
	}
	if c.cfg.MaxRetries == 0 {
		c.cfg.MaxRetries = DefaultMaxRetries
	} else if c.cfg.MaxRetries < 0 {
		c.cfg.MaxRetries = 0
	}
	if c.cfg.RetryBaseDelay <= 0 {
		c.cfg.RetryBaseDelay = 100 * time.Millisecond
	}
	if c.cfg.RetryMaxDelay <= 0 {
		c.cfg.RetryMaxDelay = 10 * time.Second
	}
	endpoint := firstNonEmpty(cfg.Endpoint, os.Getenv("RACEWAY_ENDPOINT"))
	apiKey := firstNonEmpty(cfg.APIKey, os.Getenv("RACEWAY_API_KEY"))
	if endpoint != "" {
		if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
			return nil, fmt.Errorf("raceway: endpoint %q is not an http(s) URL", endpoint)
		}
		c.exporter = newExporter(c, strings.TrimRight(endpoint, "/")+"/v1/events", apiKey)
	}
	return c, nil
}

// MustNew is New that falls back to a propagation-only client on error (and logs it).
func MustNew(cfg Config) *Client {
	c, err := New(cfg)
	if err != nil {
		cfg.Endpoint = ""
		c, _ = New(cfg)
		c.log.Warn("raceway: exporter disabled", "error", err)
	}
	return c
}

// Service returns the service name.
func (c *Client) Service() string { return c.service }

// Instance returns the instance id.
func (c *Client) Instance() string { return c.instance }

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	st := Stats{
		EventsRecorded:    s.eventsRecorded.Load(),
		EventsSent:        s.eventsSent.Load(),
		EventsDropped:     s.eventsDropped.Load(),
		BatchesSent:       s.batchesSent.Load(),
		BatchesFailed:     s.batchesFailed.Load(),
		Retries:           s.retries.Load(),
		TraceParentErrors: s.traceParentErrors.Load(),
		TraceStateErrors:  s.traceStateErrors.Load(),
		ClockErrors:       s.clockErrors.Load(),
		ClockConflicts:    s.clockConflicts.Load(),
		ClockPartial:      s.clockPartial.Load(),
		ComponentsDropped: s.componentsDropped.Load(),
		InjectErrors:      s.injectErrors.Load(),
		Requests:          s.requests.Load(),
		OutboundCalls:     s.outboundCalls.Load(),
	}
	st.HeaderParseErrors = st.TraceParentErrors + st.TraceStateErrors + st.ClockErrors
	if c.exporter != nil {
		st.QueueLength = len(c.exporter.queue)
	}
	return st
}

// Flush sends every queued event and waits until done or ctx expires.
func (c *Client) Flush(ctx context.Context) error {
	if c.exporter == nil {
		return nil
	}
	return c.exporter.flush(ctx)
}

// Shutdown drains the queue (until ctx's deadline) and stops the exporter.
// Events recorded afterwards are dropped and counted.
func (c *Client) Shutdown(ctx context.Context) error {
	c.closed.Store(true)
	if c.exporter == nil {
		return nil
	}
	return c.exporter.shutdown(ctx)
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func defaultInstance() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8ValidEnd(s) {
		s = s[:len(s)-1]
	}
	return s
}

func utf8ValidEnd(s string) bool {
	// a string is cut correctly when its last rune decodes fully
	for i := len(s) - 1; i >= 0 && i >= len(s)-4; i-- {
		b := s[i]
		if b < 0x80 {
			return i == len(s)-1
		}
		if b >= 0xC0 { // leading byte
			need := 2
			if b >= 0xF0 {
				need = 4
			} else if b >= 0xE0 {
				need = 3
			}
			return len(s)-i == need
		}
	}
	return false
}

func (c *Client) debug(msg string, args ...any) {
	if c.cfg.PropagationHeadersDebug {
		c.log.Info("raceway: "+msg, args...)
	}
}
