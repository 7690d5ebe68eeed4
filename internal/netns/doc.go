// Package netns runs code inside another Linux network namespace, for tests
// that bind and dial in namespaces of their own (see Do).
package netns
