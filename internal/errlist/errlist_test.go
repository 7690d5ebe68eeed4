package errlist

import (
	"errors"
	"testing"
)

func TestAppendTakesJoinedErrorsApart(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	errs := Append(nil, a)
	errs = Append(errs, errors.Join(b, c))
	err := Err(errs)
	if err == nil || err.Error() != "a\nb\nc" {
		t.Fatalf("Err = %q, want three lines", err)
	}
	for _, e := range []error{a, b, c} {
		if !errors.Is(err, e) {
			t.Errorf("errors.Is(err, %v) = false", e)
		}
	}
	if Err(nil) != nil {
		t.Error("Err(nil) is not nil")
	}
}

func TestJoinSkipsNilAndListsOnePerLine(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	if err := Join(nil, a, nil, errors.Join(b)); err == nil || err.Error() != "a\nb" {
		t.Fatalf("Join = %v, want two lines", err)
	}
	if Join(nil, nil) != nil || Join() != nil {
		t.Error("Join of nothing is not nil")
	}
}
