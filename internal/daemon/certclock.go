package daemon

import (
	"context"
	"time"

	"github.com/nexmux/nexmux/internal/config"
)

// certClockMax bounds a wait of the certificate clock: timers run on the
// monotonic clock, validity on the wall clock, which can jump.
const certClockMax = time.Hour

// startCertClock chooses among the loaded certificates again when one
// becomes valid or expires, and repeats the expiry warnings daily, with no
// reload: a long-running process would otherwise serve an expired pair
// beside a valid one, or stay quiet about one about to expire, until
// someone reloads it.
func (d *Daemon) startCertClock() {
	ctx, stop := context.WithCancel(context.Background())
	d.stopCerts = stop
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			wait := certClockMax
			if next := d.currentBuilt().Certs.NextCheck(config.CertExpiresSoon); !next.IsZero() {
				// x509 validity has whole seconds.
				wait = max(min(wait, time.Until(next)+time.Second), 0)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-d.certsSwapped:
				t.Stop()
				continue
			case <-t.C:
			}
			d.rechooseCerts(time.Now())
		}
	}()
}

// rechooseCerts swaps in the current certificates chosen again as of now,
// once their next check is due, and logs what draws a warning then. Routes
// are untouched: the same table is kept, so no connection is revoked.
func (d *Daemon) rechooseCerts(now time.Time) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cur := d.currentBuilt()
	if next := cur.Certs.NextCheck(config.CertExpiresSoon); cur.Certs == nil || next.IsZero() || now.Before(next) {
		return
	}
	b := *cur
	b.Certs = cur.Certs.ChosenAt(now)
	d.server.Update(stateOf(&b))
	d.mu.Lock()
	d.built = &b
	d.mu.Unlock()
	for _, w := range b.Certs.Warnings(config.CertExpiresSoon) {
		d.log.Warn(w)
	}
}
