package raceway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	raceway "github.com/raceway-dev/raceway/sdks/go"
)

func Example() {
	rw, _ := raceway.New(raceway.Config{ServiceName: "checkout", InstanceID: "c-1", Endpoint: ""})
	defer func() { _ = rw.Shutdown(context.Background()) }()
	account := &raceway.Mutex{Name: "account:42"}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /pay/{id}", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		account.Lock(ctx)
		raceway.StateChange(ctx, "account:42", raceway.Write, 100, 90)
		account.Unlock(ctx)
		wait := raceway.Go(ctx, func(ctx context.Context) { raceway.TrackRead(ctx, "cart:7", 3) })
		wait()
		sc, _ := raceway.FromContext(ctx)
		fmt.Println(sc.TraceID, sc.ParentSpanID, sc.ClockStatus)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(rw.Middleware(mux))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/pay/1", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := rw.HTTPClient().Do(req) // outside a context: the explicit traceparent is replaced by a new trace
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("raceway-clock") != "")

	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/pay/1", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, _ = http.DefaultClient.Do(req) // a plain client keeps it
	resp.Body.Close()
	// (compiled by go test, not run: the ids are random)
}
