// Command interop-server is the Go SDK's server for the cross-SDK interop driver.
//
//	PORT=8081 RACEWAY_SERVICE=go-svc [RACEWAY_ENDPOINT=http://...] interop-server
//
// GET /health -> 200 "ok"; GET /hop?next=<url> calls next (with the SDK's client
// propagation) and answers with what it received and its clock.
package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	raceway "github.com/raceway-dev/raceway/sdks/go"
)

func header(r *http.Request, name string) any {
	v := r.Header.Values(name)
	if len(v) == 0 {
		return nil
	}
	return strings.Join(v, ",")
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	rw, err := raceway.New(raceway.Config{ServiceName: os.Getenv("RACEWAY_SERVICE")})
	if err != nil {
		log.Printf("raceway: %v (propagation-only)", err)
		rw = raceway.MustNew(raceway.Config{ServiceName: os.Getenv("RACEWAY_SERVICE")})
	}
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: newHandler(rw), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = rw.Shutdown(ctx)
	}()
	log.Printf("interop-server %s listening on %s", rw.Service(), srv.Addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// newHandler returns the interop routes wrapped in the SDK middleware.
func newHandler(rw *raceway.Client) http.Handler {
	client := rw.HTTPClient()
	client.Timeout = 30 * time.Second

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /hop", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var downstream any
		if next := r.URL.Query().Get("next"); next != "" {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
			if err != nil {
				http.Error(w, "bad next: "+err.Error(), http.StatusBadRequest)
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				http.Error(w, "downstream: "+err.Error(), http.StatusBadGateway)
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			_ = resp.Body.Close()
			if err := json.Unmarshal(body, &downstream); err != nil {
				http.Error(w, "downstream body is not JSON: "+err.Error(), http.StatusBadGateway)
				return
			}
		}
		sc, _ := raceway.FromContext(ctx)
		clock := make([][]any, 0, len(sc.Clock))
		for _, e := range sc.Clock {
			clock = append(clock, []any{e.Key, e.Counter})
		}
		var parent any
		if sc.UpstreamParentID != "" {
			parent = sc.UpstreamParentID
		}
		out := map[string]any{
			"service":   rw.Service(),
			"trace_id":  sc.TraceID,
			"span_id":   sc.SpanID,
			"parent_id": parent,
			"received": map[string]any{
				"traceparent":   header(r, "traceparent"),
				"tracestate":    header(r, "tracestate"),
				"raceway_clock": header(r, "raceway-clock"),
			},
			"clock_status": string(sc.ClockStatus),
			"clock":        clock,
			"downstream":   downstream,
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})

	return rw.Middleware(mux)
}
