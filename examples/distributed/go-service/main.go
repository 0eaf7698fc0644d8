// go-inventory: the third hop of the Raceway cross-language demo (TypeScript → Python → Go → Rust).
//
// Inbound: the SDK's net/http middleware. Outbound: the SDK's RoundTripper. Fan-out: raceway.Go (each branch
// its own logical thread). Locks: raceway.Mutex (tracked). Header loss: with ?drop=clock or ?drop=all the
// call to rust-payments goes through lossyProxy, a RoundTripper placed under the SDK transport that deletes
// headers after the SDK injected them, like a misconfigured proxy would. See ../README.md.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	raceway "github.com/raceway-dev/raceway/sdks/go"
)

const service = "go-inventory"

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// lossyProxy drops propagation headers after the SDK transport injected them.
type lossyProxy struct {
	base    http.RoundTripper
	headers []string
}

func (p *lossyProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	for _, h := range p.headers {
		r.Header.Del(h)
	}
	return p.base.RoundTrip(r)
}

type server struct {
	rw        *raceway.Client
	client    *http.Client            // SDK transport
	lossy     map[string]*http.Client // SDK transport over a lossyProxy, by ?drop= value
	urls      map[string]string
	next      string
	mu        sync.Mutex // guards store (plain mutex: not part of the demo)
	store     map[string]int
	stockLock *raceway.Mutex
	fanLock   *raceway.Mutex
}

// bump reads then writes variable (both tracked) and returns the new value.
func (s *server) bump(ctx context.Context, variable string) int {
	s.mu.Lock()
	old := s.store[variable]
	s.mu.Unlock()
	raceway.TrackRead(ctx, variable, old)
	s.mu.Lock()
	s.store[variable] = old + 1
	s.mu.Unlock()
	raceway.TrackWrite(ctx, variable, old, old+1)
	return old + 1
}

// checkStock is a traced function call (function_call event with its duration).
func checkStock(ctx context.Context) error {
	return raceway.TrackFunction(ctx, "inventory.checkStock", func(ctx context.Context) error {
		time.Sleep(3 * time.Millisecond)
		return nil
	})
}

type result struct {
	Status int `json:"status"`
	Body   any `json:"body"`
}

func (s *server) call(ctx context.Context, client *http.Client, url string) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return result{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body any
	if json.Unmarshal(b, &body) != nil {
		body = string(b)
	}
	return result{Status: resp.StatusCode, Body: body}, nil
}

// clientFor returns the client for the downstream hop: lossy when the request asks for it.
func (s *server) clientFor(r *http.Request) (*http.Client, string, error) {
	drop := r.URL.Query().Get("drop")
	if drop == "" {
		return s.client, "", nil
	}
	c, ok := s.lossy[drop]
	if !ok {
		return nil, "", fmt.Errorf("unknown drop=%q (use clock or all)", drop)
	}
	return c, drop, nil
}

func traceID(ctx context.Context) string {
	if sc, ok := raceway.FromContext(ctx); ok {
		return sc.TraceID
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) forward(w http.ResponseWriter, r *http.Request, path string, out map[string]any) {
	ctx := r.Context()
	client, drop, err := s.clientFor(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	out["service"] = service
	out["trace_id"] = traceID(ctx)
	out["dropped_headers"] = drop
	res, err := s.call(ctx, client, s.next+path)
	if err != nil {
		raceway.RecordError(ctx, err)
		out["error"] = err.Error()
		writeJSON(w, http.StatusBadGateway, out)
		return
	}
	out["downstream"] = res
	status := http.StatusOK
	if res.Status != http.StatusOK {
		status = http.StatusBadGateway
	}
	writeJSON(w, status, out)
}

func (s *server) chain(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_ = checkStock(ctx)
	s.stockLock.Lock(ctx)
	v := s.bump(ctx, "chain:"+service)
	s.stockLock.Unlock(ctx)
	s.forward(w, r, "/chain", map[string]any{"value": v})
}

func (s *server) sequential(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_ = checkStock(ctx)
	v := s.bump(ctx, "demo:sequential")
	s.forward(w, r, "/sequential", map[string]any{"value": v})
}

func (s *server) fanoutWrite(ctx context.Context) int {
	s.mu.Lock()
	old := s.store["demo:fanout"]
	s.mu.Unlock()
	raceway.TrackRead(ctx, "demo:fanout", old)
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	s.store["demo:fanout"] = old + 1
	s.mu.Unlock()
	raceway.TrackWrite(ctx, "demo:fanout", old, old+1)
	return old + 1
}

func (s *server) fanout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	locked := r.URL.Query().Get("locked") == "1"
	var targets []string
	for _, t := range strings.Split(r.URL.Query().Get("targets"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 { // callee
		var v int
		if locked {
			s.fanLock.Lock(ctx)
			v = s.fanoutWrite(ctx)
			s.fanLock.Unlock(ctx)
		} else {
			v = s.fanoutWrite(ctx)
		}
		writeJSON(w, http.StatusOK, map[string]any{"service": service, "trace_id": traceID(ctx), "locked": locked, "value": v})
		return
	}
	q := ""
	if locked {
		q = "?locked=1"
	}
	results := make([]any, len(targets))
	waits := make([]func(), 0, len(targets))
	status := http.StatusOK
	var smu sync.Mutex
	for i, t := range targets {
		base, ok := s.urls[t]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unknown target " + t + " (use ts, py, go, rust)"})
			return
		}
		i := i
		waits = append(waits, raceway.Go(ctx, func(ctx context.Context) {
			res, err := s.call(ctx, s.client, base+"/fanout"+q)
			smu.Lock()
			defer smu.Unlock()
			if err != nil || res.Status != http.StatusOK {
				status = http.StatusBadGateway
			}
			if err != nil {
				results[i] = map[string]any{"error": err.Error()}
			} else {
				results[i] = res
			}
		}))
	}
	for _, wait := range waits {
		wait()
	}
	writeJSON(w, status, map[string]any{"service": service, "trace_id": traceID(ctx), "locked": locked, "targets": targets, "downstream": results})
}

func main() {
	port := envOr("DEMO_GO_PORT", "6003")
	urls := map[string]string{
		"ts":   "http://127.0.0.1:" + envOr("DEMO_TS_PORT", "6001"),
		"py":   "http://127.0.0.1:" + envOr("DEMO_PY_PORT", "6002"),
		"go":   "http://127.0.0.1:" + port,
		"rust": "http://127.0.0.1:" + envOr("DEMO_RUST_PORT", "6004"),
	}
	// RACEWAY_ENDPOINT and RACEWAY_INSTANCE_ID come from the environment (set by lib.sh).
	rw, err := raceway.New(raceway.Config{ServiceName: service, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	s := &server{
		rw:     rw,
		client: rw.HTTPClient(),
		lossy: map[string]*http.Client{
			"clock": {Transport: rw.Transport(&lossyProxy{base: http.DefaultTransport, headers: []string{"raceway-clock"}})},
			"all": {Transport: rw.Transport(&lossyProxy{base: http.DefaultTransport,
				headers: []string{"traceparent", "tracestate", "raceway-clock"}})},
		},
		urls:      urls,
		next:      urls["rust"],
		store:     map[string]int{},
		stockLock: &raceway.Mutex{Name: "lock:stock"},
		fanLock:   &raceway.Mutex{Name: "lock:fanout"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("POST /chain", s.chain)
	mux.HandleFunc("POST /sequential", s.sequential)
	mux.HandleFunc("POST /fanout", s.fanout)

	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: rw.Middleware(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		log.Printf("%s listening on %s", service, srv.Addr)
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = rw.Shutdown(ctx)
}
