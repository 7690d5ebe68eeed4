//go:build !linux

package netns

import "errors"

// Do needs Linux network namespaces.
func Do(path string, f func() error) error {
	return errors.New("netns: network namespaces need Linux")
}
