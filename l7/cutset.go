package l7

import "sync"

// cutSet holds what one moment of a drain ends together (its start: the
// lingers; its end: the connections to Nexus): once cut, nothing joins.
type cutSet[T comparable] struct {
	mu  sync.Mutex
	m   map[T]struct{}
	cut bool
}

// add takes in x; false once cut ran.
func (s *cutSet[T]) add(x T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return false
	}
	if s.m == nil {
		s.m = map[T]struct{}{}
	}
	s.m[x] = struct{}{}
	return true
}

func (s *cutSet[T]) remove(x T) {
	s.mu.Lock()
	delete(s.m, x)
	s.mu.Unlock()
}

// cutAll refuses what would join from now on and hands over what s held,
// for the caller to end.
func (s *cutSet[T]) cutAll() map[T]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = true
	m := s.m
	s.m = nil
	return m
}

// unlessCut runs f unless cut ran, and says whether it did: a member's
// step that cutAll's ending of it must not be able to undo (a deadline set
// after the cut's past one) runs either wholly before cutAll or not at all.
func (s *cutSet[T]) unlessCut(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return false
	}
	f()
	return true
}
