package iptables

import (
	"strings"
	"testing"
)

func TestValidateListsEveryProblem(t *testing.T) {
	err := Rules{Chain: "bad chain!", ListenPort: 0}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad chain, no listen port and no ports")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{`chain "bad chain!"`, "listen port 0", "no --port routes"}
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("problem %d %q does not mention %q", i, lines[i], w)
		}
	}
	if err := (Rules{ListenPort: 8443, Ports: []int{8082}}).Validate(); err != nil {
		t.Errorf("valid rules refused: %v", err)
	}
}
