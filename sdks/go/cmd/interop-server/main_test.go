package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	raceway "github.com/raceway-dev/raceway/sdks/go"
)

func TestHopChain(t *testing.T) {
	b := httptest.NewServer(newHandler(raceway.MustNew(raceway.Config{ServiceName: "go-b", InstanceID: "b"})))
	defer b.Close()
	a := httptest.NewServer(newHandler(raceway.MustNew(raceway.Config{ServiceName: "go-a", InstanceID: "a"})))
	defer a.Close()

	resp, err := http.Get(a.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("health %d %q", resp.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodGet, a.URL+"/hop?next="+url.QueryEscape(b.URL+"/hop"), nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Service     string             `json:"service"`
		TraceID     string             `json:"trace_id"`
		SpanID      string             `json:"span_id"`
		ParentID    *string            `json:"parent_id"`
		ClockStatus string             `json:"clock_status"`
		Clock       [][]any            `json:"clock"`
		Received    map[string]*string `json:"received"`
		Downstream  *struct {
			Service     string             `json:"service"`
			TraceID     string             `json:"trace_id"`
			ParentID    *string            `json:"parent_id"`
			ClockStatus string             `json:"clock_status"`
			Received    map[string]*string `json:"received"`
			Downstream  any                `json:"downstream"`
		} `json:"downstream"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	d := out.Downstream
	if out.Service != "go-a" || out.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || *out.ParentID != "00f067aa0ba902b7" ||
		out.ClockStatus != "absent" || out.Received["raceway_clock"] != nil || d == nil {
		t.Fatalf("hop A: %+v", out)
	}
	if d.Service != "go-b" || d.TraceID != out.TraceID || d.ClockStatus != "ok" || d.Downstream != nil ||
		d.Received["raceway_clock"] == nil || *d.Received["tracestate"] != "raceway="+*d.ParentID {
		t.Fatalf("hop B: %+v", d)
	}
	if len(out.Clock) != 2 {
		t.Fatalf("A's clock must include B's component after the response: %v", out.Clock)
	}
}
