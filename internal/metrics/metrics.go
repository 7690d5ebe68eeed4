// Package metrics exposes what nexmux does as Prometheus metrics, plus the
// /healthz and /readyz probes, on the --metrics-listen address.
package metrics

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
)

// Metrics holds nexmux's collectors on their own registry, so tests and
// embedders never collide with the global one.
type Metrics struct {
	Registry *prometheus.Registry

	connections       *prometheus.CounterVec
	requests          *prometheus.CounterVec
	bytesIn           *prometheus.CounterVec
	bytesOut          *prometheus.CounterVec
	upstreamLatency   *prometheus.HistogramVec
	uploadsInFlight   *prometheus.GaugeVec
	handshakeFailures *prometheus.CounterVec
	reloads           *prometheus.CounterVec
	memoryTrims       prometheus.Counter
	memoryTrimmed     prometheus.Counter

	// perRoute holds each route key's series, resolved once: a request
	// then costs no label hashing or vector lookup (*routeSeries).
	perRoute sync.Map
}

// routeSeries are one route's request series. requests is indexed by
// method and status class (methodIndex, classIndex), filled on first use;
// mirror registries' series are looked up per request.
type routeSeries struct {
	bytesIn, bytesOut prometheus.Counter
	latency           atomic.Pointer[prometheus.Observer] // on the first answer from Nexus
	requests          [len(l7.RegistryMethods) + 1][len(classes)]atomic.Pointer[prometheus.Counter]
}

var classes = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// methodIndex is the method's place in l7.RegistryMethods; every other
// method shares the last index, "OTHER" (methodLabel).
func methodIndex(m string) int {
	if i := slices.Index(l7.RegistryMethods[:], m); i >= 0 {
		return i
	}
	return len(l7.RegistryMethods)
}

func classIndex(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
}

func (m *Metrics) route(key string) *routeSeries {
	if rs, ok := m.perRoute.Load(key); ok {
		return rs.(*routeSeries)
	}
	rs := &routeSeries{
		bytesIn:  m.bytesIn.WithLabelValues(key),
		bytesOut: m.bytesOut.WithLabelValues(key),
	}
	got, _ := m.perRoute.LoadOrStore(key, rs)
	return got.(*routeSeries)
}

func (rs *routeSeries) request(m *Metrics, key, method string, status int) prometheus.Counter {
	mi, ci := methodIndex(method), classIndex(status)
	p := &rs.requests[mi][ci]
	if c := p.Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(key, methodLabel(method), classes[ci], "")
	p.Store(&c)
	return c
}

// New registers every collector.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.connections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_connections_total", Help: "Connections given a route.",
	}, []string{"route"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_requests_total", Help: "HTTP requests by route, method and status class (registry: mirror names' configured registry, else empty).",
	}, []string{"route", "method", "class", "registry"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_request_bytes_total", Help: "Request body bytes received from clients (passthrough routes: every byte of a stream, counted when it ends).",
	}, []string{"route"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_response_bytes_total", Help: "Response body bytes sent to clients (passthrough routes: every byte of a stream, counted when it ends).",
	}, []string{"route"})
	m.upstreamLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nexmux_upstream_latency_seconds",
		Help:    "Time until Nexus's response headers.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"route"})
	m.uploadsInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nexmux_uploads_in_flight", Help: "Write requests (POST/PATCH/PUT/DELETE) in progress.",
	}, []string{"route"})
	m.handshakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_handshake_failures_total", Help: "Connections refused before HTTP, by reason; malformed_request: an HTTP/1 request net/http answered itself, before nexmux's handler.",
	}, []string{"reason"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexmux_reloads_total", Help: "Configuration reloads by result.",
	}, []string{"result"})
	// Known label values start at 0: a series born at 1 hides its first
	// event from increase() and rate(), so an alert on the first failed
	// reload after a restart would never fire.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.memoryTrims = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nexmux_memory_trims_total", Help: "Forced collections that returned freed memory to the OS once traffic went quiet.",
	})
	m.memoryTrimmed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nexmux_memory_trimmed_bytes_total", Help: "Heap bytes those trims handed back to the OS.",
	})
	m.Registry.MustRegister(m.connections, m.requests, m.bytesIn, m.bytesOut,
		m.upstreamLatency, m.uploadsInFlight, m.handshakeFailures, m.reloads, m.memoryTrims, m.memoryTrimmed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// IdleReleased registers the idle-release series, read from released (an
// mux.Server's Released) at each scrape.
func (m *Metrics) IdleReleased(released func() (now int, total int64)) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nexmux_idle_released_connections",
			Help: "Idle HTTP/1 keep-alive connections released (--idle-release-after): open, waiting for their next request without net/http's goroutine and buffers.",
		}, func() float64 { n, _ := released(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nexmux_idle_releases_total",
			Help: "Releases of idle HTTP/1 keep-alive connections.",
		}, func() float64 { _, t := released(); return float64(t) }),
	)
}

// Connections registers the --max-conns series, read from open (an
// mux.Server's Open) at each scrape: how close the listener is to refusing.
func (m *Metrics) Connections(open func() (int64, int)) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nexmux_open_connections",
			Help: "Places taken against --max-conns while it is set: a client connection or SOCKS5 session takes one from accept, a SOCKS5 stream two (its session's among them), a passthrough stream three.",
		}, func() float64 { n, _ := open(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nexmux_max_connections",
			Help: "--max-conns (0: no limit).",
		}, func() float64 { _, l := open(); return float64(l) }),
	)
}

// Routed counts a connection given a route.
func (m *Metrics) Routed(rt *route.Route) { m.connections.WithLabelValues(rt.Key).Inc() }

// Streamed counts the bytes of a finished passthrough stream.
func (m *Metrics) Streamed(rt *route.Route, in, out int64) {
	rs := m.route(rt.Key)
	rs.bytesIn.Add(float64(in))
	rs.bytesOut.Add(float64(out))
}

// Refused counts a connection refused before HTTP.
func (m *Metrics) Refused(reason string) { m.handshakeFailures.WithLabelValues(reason).Inc() }

// RefusalReasons creates the handshake-failure series of reasons at 0 (see
// the reloads series in New).
func (m *Metrics) RefusalReasons(reasons ...string) {
	for _, r := range reasons {
		m.handshakeFailures.WithLabelValues(r)
	}
}

// Reloaded counts a reload by result ("ok" or "error").
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("error").Inc()
	}
}

// MemoryTrimmed counts a trim that returned about bytes to the OS.
func (m *Metrics) MemoryTrimmed(bytes uint64) {
	m.memoryTrims.Inc()
	m.memoryTrimmed.Add(float64(bytes))
}

// Observe records one finished request (an l7.Observer).
func (m *Metrics) Observe(ci *l7.ConnInfo, r *http.Request, rec l7.Record) {
	key := ci.Route.Key
	rs := m.route(key)
	if rec.Registry == "" {
		rs.request(m, key, r.Method, rec.Status).Inc()
	} else {
		m.requests.WithLabelValues(key, methodLabel(r.Method), statusClass(rec.Status), rec.Registry).Inc()
	}
	rs.bytesIn.Add(float64(rec.BytesIn))
	rs.bytesOut.Add(float64(rec.BytesOut))
	if rec.Upstream > 0 {
		l := rs.latency.Load()
		if l == nil {
			o := m.upstreamLatency.WithLabelValues(key)
			l = &o
			rs.latency.Store(l)
		}
		(*l).Observe(rec.Upstream.Seconds())
	}
}

// methodLabel bounds the label to the methods the Registry API uses: the
// method is chosen by the client, and every new label value is a new series.
func methodLabel(m string) string {
	if l7.RegistryMethod(m) {
		return m
	}
	return "OTHER"
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// InFlight wraps the HTTP stage to keep the uploads-in-flight gauge.
func (m *Metrics) InFlight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ci := l7.FromContext(r.Context())
		if ci == nil || ci.Route == nil || !isWrite(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		g := m.uploadsInFlight.WithLabelValues(ci.Route.Key)
		g.Inc()
		defer g.Dec()
		next.ServeHTTP(w, r)
	})
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// Readiness answers /readyz from the node set's health table, so a probe
// storm never becomes a Nexus storm. With several nodes (HA) it is ready
// when any node is readable: failover serves from that one.
type Readiness struct {
	// Table answers from the node set's health table (writable: some node
	// must take writes); nil: always ready.
	Table func(writable bool) (bool, string)
	// Logger gets the reason when not ready: the probe's body stays
	// generic, since node addresses and dial errors are no one else's.
	Logger *slog.Logger
	// Draining, when it returns true, makes /readyz fail whatever the
	// nodes say: the process is stopping, balancers should stop sending.
	Draining func() bool

	// notReady keeps a balancer or a script polling /readyz while Nexus
	// is down from turning every probe into a warning line.
	notReady lograte.Limiter
}

// wantWritable reports whether /readyz asks for a writable node:
// ?writable (empty), true, 1, yes or on in any case; false, 0, no or off
// does not. Any other value is an error, and so are another key, a query
// that does not parse and writable given twice: a probe with a typo would
// otherwise watch one check while its author meant the other.
func wantWritable(r *http.Request) (bool, error) {
	const known = "/readyz takes one query key, writable (e.g. ?writable or ?writable=false)"
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// URL.Query would drop the bad pair and run the plain check.
		return false, fmt.Errorf("query %q does not parse: %v; %s", r.URL.RawQuery, err, known)
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "writable" {
			return false, fmt.Errorf("unknown query key %q; %s", k, known)
		}
	}
	if !q.Has("writable") {
		return false, nil
	}
	if len(q["writable"]) > 1 {
		return false, fmt.Errorf("writable given %d times; %s", len(q["writable"]), known)
	}
	switch v := q.Get("writable"); strings.ToLower(v) {
	case "", "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	default:
		return false, fmt.Errorf("writable=%q: want true, 1, yes or on, or false, 0, no or off", v)
	}
}

// Handler serves /metrics, /healthz (the process answers) and /readyz
// (Nexus answers; 503 while the process stops), to GET and HEAD: the mux
// answers other methods 405 with Allow, so a probe misconfigured with
// POST fails instead of passing, and never runs a lone node's probes.
func (m *Metrics) Handler(ready *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writable, err := wantWritable(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ready == nil {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		if ready.Draining != nil && ready.Draining() {
			http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
			return
		}
		ok := true
		if ready.Table != nil {
			var why string
			if ok, why = ready.Table(writable); !ok && ready.Logger != nil {
				if log, n := ready.notReady.Note(); log {
					ready.Logger.Warn("not ready", "reason", why, "probes", n)
				}
			}
		}
		if !ok {
			// Generic on purpose: the reason (addresses, errors) is logged.
			msg := "not ready: Nexus is not answering"
			if writable {
				msg = "not ready: no Nexus node takes writes"
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
