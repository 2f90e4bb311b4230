package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/dynamicpb"
)

// benchSpec describes one load run: `concurrency` callers repeat one call
// for `duration_ms`, either through the plugin (an L1KeyCrypto RPC) or
// directly against Transit's HTTP API with the same token source.
type benchSpec struct {
	Mode        string          `json:"mode"` // "plugin" or "direct"
	Method      string          `json:"method"`
	Request     json.RawMessage `json:"request"`
	Concurrency int             `json:"concurrency"`
	DurationMs  int             `json:"duration_ms"`
	// direct mode
	URL   string          `json:"url"`
	Token string          `json:"token"`
	CAPEM string          `json:"ca_pem"`
	Body  json.RawMessage `json:"body"`
}

type benchResult struct {
	Code   string  `json:"code"`
	Calls  int     `json:"calls"`
	Errors int     `json:"errors"`
	PerSec float64 `json:"per_sec"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	First  string  `json:"first_error,omitempty"`
}

func (h *host) bench(ctx context.Context, spec *benchSpec) any {
	if spec == nil || spec.Concurrency < 1 || spec.DurationMs < 1 {
		return answer{Code: "HostError", Message: "bench needs concurrency and duration_ms"}
	}
	var one func(context.Context) error
	switch spec.Mode {
	case "plugin":
		md, ok := h.files[spec.Method]
		if !ok {
			return answer{Code: "HostError", Message: "unknown method " + spec.Method}
		}
		req := dynamicpb.NewMessage(md.Input())
		if err := protojson.Unmarshal(spec.Request, req); err != nil {
			return answer{Code: "HostError", Message: err.Error()}
		}
		one = func(ctx context.Context) error {
			resp := dynamicpb.NewMessage(md.Output())
			return h.conn.Invoke(ctx, spec.Method, req, resp)
		}
	case "direct":
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(spec.CAPEM))
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: spec.Concurrency,
		}}
		one = func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, spec.URL, bytes.NewReader(spec.Body))
			if err != nil {
				return err
			}
			req.Header.Set("X-Vault-Token", spec.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
			}
			return nil
		}
	default:
		return answer{Code: "HostError", Message: "mode must be plugin or direct"}
	}

	// Warm up connections and tokens before measuring.
	for i := 0; i < spec.Concurrency; i++ {
		if err := one(ctx); err != nil {
			return benchResult{Code: "Error", First: err.Error()}
		}
	}
	deadline := time.Now().Add(time.Duration(spec.DurationMs) * time.Millisecond)
	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	first := ""
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < spec.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t := time.Now()
				err := one(ctx)
				d := time.Since(t)
				if err != nil {
					mu.Lock()
					errors++
					if first == "" {
						first = err.Error()
					}
					mu.Unlock()
					continue
				}
				local = append(local, d)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	return benchResult{
		Code:   "OK",
		Calls:  len(latencies),
		Errors: errors,
		PerSec: float64(len(latencies)) / elapsed.Seconds(),
		P50Ms:  pct(0.50),
		P99Ms:  pct(0.99),
		First:  first,
	}
}
