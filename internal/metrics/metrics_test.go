package metrics

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
)

// The method label takes l7's allowlist: what nexmux refuses is one
// OTHER series, however many methods clients invent.
func TestMethodLabelBounded(t *testing.T) {
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	ci := &l7.ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com")}
	m := New()
	for _, method := range []string{http.MethodPatch, http.MethodPatch, "PROPFIND", "BREW", "patch", http.MethodGet} {
		m.Observe(ci, httptest.NewRequest(method, "/v2/", nil), l7.Record{Status: http.StatusAccepted})
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "nexmux_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "method" {
					got[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	want := map[string]float64{"PATCH": 2, "GET": 1, "OTHER": 3}
	if len(got) != len(want) {
		t.Fatalf("method labels %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("method labels %v, want %v", got, want)
		}
	}
}

// Observe's per-route series are the ones the label lookups give: every
// method and status class, a mirror registry's own series, and no latency
// series before Nexus answered.
func TestObserveSeries(t *testing.T) {
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a", "team-b.example.com=team-b"}})
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	want := map[string]float64{}
	for _, host := range []string{"team-a.example.com", "team-b.example.com"} {
		ci := &l7.ConnInfo{Table: tab, Route: tab.LookupHost(host)}
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"} {
			for _, status := range []int{0, 99, 101, 200, 204, 307, 404, 503, 600} {
				for _, reg := range []string{"", "docker.io"} {
					for range 2 {
						m.Observe(ci, httptest.NewRequest(method, "/v2/", nil), l7.Record{Status: status, Registry: reg, BytesIn: 3, BytesOut: 5})
					}
					want[ci.Route.Key+" "+methodLabel(method)+" "+statusClass(status)+" "+reg] += 2
				}
			}
		}
	}
	ci := &l7.ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com")}
	m.Observe(ci, httptest.NewRequest("GET", "/v2/", nil), l7.Record{Status: 200, Upstream: 1})
	want[ci.Route.Key+" GET 2xx "]++
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	latency := map[string]uint64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch f.GetName() {
			case "nexmux_requests_total":
				got[l["route"]+" "+l["method"]+" "+l["class"]+" "+l["registry"]] += s.GetCounter().GetValue()
			case "nexmux_upstream_latency_seconds":
				latency[l["route"]] = s.GetHistogram().GetSampleCount()
			case "nexmux_request_bytes_total":
				if v := s.GetCounter().GetValue(); v != 3*144*2 {
					t.Errorf("request bytes of %s: %v", l["route"], v)
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d request series, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %q = %v, want %v", k, got[k], v)
		}
	}
	if len(latency) != 1 || latency[ci.Route.Key] != 1 {
		t.Errorf("latency series %v, want one observation for %s only", latency, ci.Route.Key)
	}
}

// BenchmarkObserve is one finished request's metrics.
func BenchmarkObserve(b *testing.B) {
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		b.Fatal(err)
	}
	ci := &l7.ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com")}
	m := New()
	r := httptest.NewRequest(http.MethodHead, "/v2/app/manifests/latest", nil)
	rec := l7.Record{Status: 200, BytesOut: 528, Upstream: 300 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ci, r, rec)
	}
}

// A balancer polling /readyz while no node can serve gets its 503 every
// time, but the log gets one warning a second that counts the probes.
func TestNotReadyWarnsOnceASecond(t *testing.T) {
	var buf bytes.Buffer
	ready := &Readiness{
		Table:  func(bool) (bool, string) { return false, "no Nexus node is reachable" },
		Logger: slog.New(slog.NewTextHandler(&buf, nil)),
	}
	h := New().Handler(ready)
	for range 50 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz answered %d, want 503", rec.Code)
		}
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 1 {
		t.Fatalf("%d warning lines for 50 probes in well under a second, want 1:\n%s", lines, buf.String())
	}
	if !strings.Contains(buf.String(), `reason="no Nexus node is reachable"`) {
		t.Fatalf("the warning lost its reason: %s", buf.String())
	}
}

// /readyz?writable takes the common spellings of a yes or no: "no" and
// "off" once ran the writable check (a value strconv.ParseBool does not
// know read as asking for it). A value that is neither is refused with
// 400 naming it, rather than running one check or the other.
func TestReadyzWritableValues(t *testing.T) {
	var asked []bool
	h := New().Handler(&Readiness{Table: func(writable bool) (bool, string) {
		asked = append(asked, writable)
		return true, ""
	}})
	for q, want := range map[string]bool{
		"": false, "?writable": true, "?writable=": true,
		"?writable=true": true, "?writable=1": true, "?writable=yes": true, "?writable=on": true, "?writable=YES": true,
		"?writable=false": false, "?writable=0": false, "?writable=no": false, "?writable=off": false, "?writable=No": false,
	} {
		asked = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz"+q, nil))
		if rec.Code != http.StatusOK || len(asked) != 1 || asked[0] != want {
			t.Errorf("/readyz%s: %d %q, writable asked %v, want %v", q, rec.Code, rec.Body.String(), asked, want)
		}
	}
	asked = nil
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz?writable=maybe", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"maybe"`) || len(asked) != 0 {
		t.Errorf("/readyz?writable=maybe: %d %q (table asked %v), want 400 naming the value", rec.Code, rec.Body.String(), asked)
	}
}

// /readyz knows one query key, writable. A misspelt key, a query that does
// not parse, or writable given twice is refused with 400 naming the key it
// knows, as a bad value of writable is: a readiness probe with a typo then
// fails at rollout, rather than silently watching the plain check while
// its author meant the writable one.
func TestReadyzUnknownOrMalformedQuery(t *testing.T) {
	var asked []bool
	h := New().Handler(&Readiness{Table: func(writable bool) (bool, string) {
		asked = append(asked, writable)
		return true, ""
	}})
	for _, q := range []string{"?writeable", "?writeable=1", "?Writable", "?ready&writable", "?writable=%zz", "?writable=1;x", "?writable=1&writable=0"} {
		asked = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz"+q, nil))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "writable") || len(asked) != 0 {
			t.Errorf("/readyz%s: %d %q (table asked %v), want 400 naming the key writable", q, rec.Code, rec.Body.String(), asked)
		}
	}
	// No query, or an empty one, is the plain check.
	for _, q := range []string{"", "?"} {
		asked = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz"+q, nil))
		if rec.Code != http.StatusOK || len(asked) != 1 || asked[0] {
			t.Errorf("/readyz%s: %d %q, writable asked %v, want the plain check", q, rec.Code, rec.Body.String(), asked)
		}
	}
}
