module github.com/nexmux/nexmux/scripts/benchtool

go 1.26.8

require (
	golang.org/x/image v0.48.0
	golang.org/x/sys v0.50.0
)
