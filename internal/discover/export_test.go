package discover

// SetMaxSettings lowers the size cap of the settings answer for a test.
func SetMaxSettings(n int64) (restore func()) {
	old := maxSettings
	maxSettings = n
	return func() { maxSettings = old }
}
