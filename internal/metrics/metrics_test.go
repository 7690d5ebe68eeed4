package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
