// Package daemon runs a validated configuration: it binds the listeners,
// wires the fan-in (mux) to the HTTP stage (l7), and owns the process's
// life cycle: reload on SIGHUP, drain on SIGTERM.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/logtext"
	"github.com/nexmux/nexmux/internal/memtrim"
	"github.com/nexmux/nexmux/internal/metrics"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/socks5"
	"github.com/nexmux/nexmux/upstream"
)

// DefaultDrainTimeout is how long SIGTERM waits for in-flight transfers.
const DefaultDrainTimeout = 30 * time.Second

// Daemon is a running nexmux.
type Daemon struct {
	log    *slog.Logger
	access *slog.Logger // access lines; log unless Options.AccessLog
	built  *config.Runtime
	server *mux.Server
	socks  *socks5.Server // nil without --socks5-listen
	proxy  *l7.Proxy

	// Reload, when set, re-reads the configuration (flags, env, file).
	reload func() (*config.Runtime, error)
	listen func(network, addr string) (net.Listener, error)

	metrics    *metrics.Metrics
	metricsSrv *http.Server
	metricsLn  *metricsListener // its connections, for tests

	listeners []net.Listener
	addrs     map[string]net.Addr
	errc      chan error
	wg        sync.WaitGroup
	mu        sync.Mutex // guards built across reloads
	reloadMu  sync.Mutex // one reload at a time; guards the watch* fields
	stopWatch context.CancelFunc
	stopTrim  context.CancelFunc
	stopProbe context.CancelFunc
	stopCerts context.CancelFunc
	// certsSwapped wakes the certificate clock when a reload brought
	// other certificates.
	certsSwapped chan struct{}

	watchInterval time.Duration
	// watchFiles are the files whose change reloads, sorted; watchSeen
	// their state when the configuration was last read.
	watchFiles []string
	watchSeen  map[string]string
	// watchPending is the changed state of the last poll, reloaded once a
	// poll finds it again (pollWatched).
	watchPending map[string]string
	// fileStates: Options.FileStates, for Start.
	fileStates map[string]string

	memTrimInterval time.Duration
	memTrimPolicy   memtrim.Policy

	metricsIdleTimeout  time.Duration
	metricsWriteTimeout time.Duration

	// draining is set at SIGTERM: /readyz fails from then on.
	draining atomic.Bool
}

// Options for New.
type Options struct {
	Logger *slog.Logger
	// AccessLog takes the one line per request (default Logger);
	// NewLoggers makes a pair that batches them (LogWriter).
	AccessLog *slog.Logger
	// Reload re-reads the configuration on SIGHUP; nil disables reload.
	// When it read a configuration that is invalid, it returns it as a
	// Runtime holding only Config, with the error: the daemon then also
	// reports what in it needs a restart, and watches the files it names
	// to retry when they change.
	Reload func() (*config.Runtime, error)
	// FileStates is the state of the watched files taken before the
	// configuration New is given was read (ReadConfig), for the watcher to
	// start from; nil: their state at Start.
	FileStates map[string]string
	// Listen creates the listeners (default net.Listen). Tests bind inside
	// a network namespace through it; socket activation would too.
	Listen func(network, addr string) (net.Listener, error)

	// WatchInterval is how often watched files are checked (default
	// DefaultWatchInterval).
	WatchInterval time.Duration
	// MemTrimInterval is how often the memory trimmer samples the runtime
	// (default DefaultMemTrimInterval), and MemTrimPolicy when it trims
	// (zero value: memtrim.DefaultPolicy).
	MemTrimInterval time.Duration
	MemTrimPolicy   memtrim.Policy
	// MetricsIdleTimeout closes idle keep-alive connections to the
	// metrics listener (default DefaultMetricsIdleTimeout).
	MetricsIdleTimeout time.Duration
	// MetricsWriteTimeout bounds the writing of each metrics listener
	// answer (default DefaultMetricsWriteTimeout).
	MetricsWriteTimeout time.Duration
	// H2MaxReadFrameSize replaces mux.MaxReadFrameSize (0: keep it); for
	// benchmarks that compare HTTP/2 frame sizes, not a setting.
	H2MaxReadFrameSize int
}

// DefaultMetricsIdleTimeout: scrapers and probes come every few seconds; a
// client that holds a connection longer without asking frees it.
const DefaultMetricsIdleTimeout = 60 * time.Second

// DefaultMetricsWriteTimeout: the metrics listener's answers take
// milliseconds to write; a peer that sends requests and never reads the
// answers blocks a write, and without a bound held its connection (and a
// place of MetricsMaxConns) for good. 30 s leaves a scrape over a slow link
// room; Prometheus gives up on one after 10 s by default.
const DefaultMetricsWriteTimeout = 30 * time.Second

// newLogger builds the slog logger the flags ask for.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// New prepares a daemon for b; Start binds and serves.
func New(b *config.Runtime, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	listen := opts.Listen
	if listen == nil {
		listen = net.Listen
	}
	access := opts.AccessLog
	if access == nil {
		access = log
	}
	d := &Daemon{log: log, access: access, built: b, reload: opts.Reload, fileStates: opts.FileStates, listen: listen, addrs: map[string]net.Addr{}, errc: make(chan error, 16), certsSwapped: make(chan struct{}, 1), metrics: metrics.New(),
		watchInterval: cmp.Or(opts.WatchInterval, DefaultWatchInterval), memTrimInterval: cmp.Or(opts.MemTrimInterval, DefaultMemTrimInterval), memTrimPolicy: opts.MemTrimPolicy,
		metricsIdleTimeout: cmp.Or(opts.MetricsIdleTimeout, DefaultMetricsIdleTimeout), metricsWriteTimeout: cmp.Or(opts.MetricsWriteTimeout, DefaultMetricsWriteTimeout)}
	if d.memTrimPolicy == (memtrim.Policy{}) {
		d.memTrimPolicy = memtrim.DefaultPolicy
	}
	var err error
	// The node set lives across reloads: its health table and upload
	// tags outlast any one configuration.
	b.Upstreams.Set().SetLogger(log)
	d.metrics.Registry.MustRegister(b.Upstreams.Set())
	d.proxy, err = l7.New(l7.Config{Upstreams: b.Upstreams, Logger: log, Observe: d.observe, PlainHTTPScheme: b.Config.PlainHTTPScheme, StripHeaders: b.Config.StripHeader,
		MaxRequestsPerClient: b.Config.MaxRequestsPerClient, PerClientIPv6Prefix: b.Config.PerClientIPv6Prefix, MaxConnAge: b.Config.MaxConnAge,
		BodyTimeout: cmp.Or(b.Config.BodyTimeout, -1), SendTimeout: cmp.Or(b.Config.SendTimeout, -1)}) // 0: never
	if err != nil {
		return nil, err
	}
	d.proxy.SetMirrorAuth(b.MirrorAuth)
	c := b.Config
	d.server, err = mux.New(mux.Options{
		HandshakeTimeout:       c.HandshakeTimeout,
		HeaderTimeout:          c.HeaderTimeout,
		IdleTimeout:            c.IdleTimeout,
		IdleRelease:            cmp.Or(c.IdleRelease, -1), // 0: never
		Handler:                d.metrics.InFlight(d.proxy),
		Logger:                 log,
		Refused:                d.metrics.Refused,
		Routed:                 d.metrics.Routed,
		Streamed:               d.metrics.Streamed,
		MaxConns:               c.MaxConns,
		MaxConnsPerClient:      c.MaxConnsPerClient,
		PerClientIPv6Prefix:    c.PerClientIPv6Prefix,
		PassthroughIdleTimeout: c.PassthroughIdleTimeout,
		PortTLSOnly:            c.PortTLSOnly,
		SendTimeout:            c.SendTimeout,
		H2MaxReadFrameSize:     opts.H2MaxReadFrameSize,
	}, stateOf(b))
	if err != nil {
		return nil, err
	}
	d.metrics.IdleReleased(d.server.Released)
	d.metrics.Connections(d.server.Open)
	d.metrics.RefusalReasons(append(slices.Clone(mux.Reasons), socks5.ReasonDenied, socks5.ReasonAuth, socks5.ReasonPending)...)
	return d, nil
}

// stateOf is the part of a configuration that applies per connection and
// is swapped whole on reload.
func stateOf(b *config.Runtime) *mux.State {
	return &mux.State{
		Table:                  b.Table,
		Certs:                  b.Certs,
		ProxyProtocol:          b.ProxyPolicy,
		PassthroughProxyHeader: b.PassthroughProxyHeader,
	}
}

// Metrics returns the daemon's collectors.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

func (d *Daemon) observe(ci *l7.ConnInfo, r *http.Request, rec l7.Record) {
	d.metrics.Observe(ci, r, rec)
	d.accessLog(ci, r, rec)
}

// accessLog writes one line per request. Only the path is logged: query
// strings may carry credentials in some clients, and headers
// (Authorization, tokens) are never logged.
func (d *Daemon) accessLog(ci *l7.ConnInfo, r *http.Request, rec l7.Record) {
	if !d.access.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	l := accessLine{route: ci.Route.Key, repo: rec.Repo, method: logtext.Bound(r.Method), path: logtext.Bound(r.URL.Path),
		status: rec.Status, bytesIn: rec.BytesIn, bytesOut: rec.BytesOut, duration: rec.Duration.Round(time.Microsecond),
		client: ci.ClientString(), registry: rec.Registry, reason: logtext.Bound(rec.Reason)}
	if h, ok := d.access.Handler().(*accessHandler); ok {
		t := rec.End
		if t.IsZero() {
			t = time.Now()
		}
		h.write(t, &l)
		return
	}
	d.access.LogAttrs(context.Background(), slog.LevelInfo, "request", l.attrs()...)
}

// Start binds every listener and starts serving.
func (d *Daemon) Start() error {
	// Read once: the file watcher and the certificate clock, started
	// below, replace d.built under d.mu.
	built := d.currentBuilt()
	c := built.Config
	// Every listener is bound before any serves, and each one that cannot
	// be is named in the one error: one at a time, the operator would
	// find the next only at the next start.
	var bindErrs []error
	bind := func(listen func(network, addr string) (net.Listener, error), addr, what string) net.Listener {
		l, err := listen("tcp", addr)
		if err != nil {
			bindErrs = append(bindErrs, fmt.Errorf("%s: %w", what, err))
			return nil
		}
		return l
	}
	// Not ml: the metrics listener is closed apart, after the drain, so
	// that /readyz answers during it.
	keep := func(l net.Listener) net.Listener {
		if l != nil {
			d.listeners = append(d.listeners, l)
		}
		return l
	}
	ln := keep(bind(d.listen, c.Listen, "listen "+c.Listen))
	type bound struct {
		ln   net.Listener
		port int
	}
	var ports []bound
	if c.BindPorts {
		host, _, _ := net.SplitHostPort(c.Listen)
		for _, p := range built.Table.Ports() {
			if pl := keep(bind(d.listen, net.JoinHostPort(host, strconv.Itoa(p)), fmt.Sprintf("bind port %d", p))); pl != nil {
				ports = append(ports, bound{pl, p})
			}
		}
	}
	var sl, ml net.Listener
	if c.Socks5Listen != "" {
		sl = keep(bind(d.listen, c.Socks5Listen, "socks5-listen "+c.Socks5Listen))
	}
	if c.MetricsListen != "" {
		ml = bind(net.Listen, c.MetricsListen, "metrics-listen "+c.MetricsListen)
	}
	if len(bindErrs) > 0 {
		d.closeListeners()
		if ml != nil {
			ml.Close()
		}
		return errlist.Join(bindErrs...)
	}
	d.addrs["listen"] = ln.Addr()
	for _, b := range ports {
		d.addrs["port:"+strconv.Itoa(b.port)] = b.ln.Addr()
	}
	if sl != nil {
		d.addrs["socks5"] = sl.Addr()
		opts := socks5.Options{
			SNIPorts:         []int{443, built.ListenPort, ln.Addr().(*net.TCPAddr).Port},
			HandshakeTimeout: c.HandshakeTimeout,
			Logger:           d.log,
			Refused:          d.metrics.Refused,
			// Sessions without a stream yet hold a descriptor and a
			// --max-conns place each; at most a quarter of --max-conns
			// of them, so streams keep room, and a client's
			// --max-conns-per-client.
			MaxPending:          pendingCap(c.MaxConns),
			MaxPendingPerClient: c.MaxConnsPerClient,
			PerClientIPv6Prefix: c.PerClientIPv6Prefix,
		}
		if c.Socks5AuthFile != "" {
			// Read at each login: a reload revokes users.
			opts.Users = func() map[string]string { return d.currentBuilt().Socks5Credentials }
		}
		d.socks = socks5.New(d.server, opts)
		d.goServe(func() error { return d.socks.Serve(sl) })
	}
	if ml != nil {
		d.addrs["metrics"] = ml.Addr()
		set := built.Upstreams.Set()
		ready := &metrics.Readiness{Table: set.Readable, Logger: d.log, Draining: d.draining.Load}
		mm := http.NewServeMux()
		mm.Handle("GET /upstreams", set.Handler())
		// Other methods would fall to "/" and its 404, which reads as
		// "no such endpoint"; net/http's own 405 needs no catch-all.
		mm.HandleFunc("/upstreams", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		})
		mm.Handle("/", d.metrics.Handler(ready))
		// No endpoint here reads a body: AnswerFirst answers before
		// net/http reads what it would of one, and ReadTimeout bounds
		// that read, after the answer. WriteTimeout, counted from each
		// request's headers, ends a connection whose peer does not take
		// an answer: no answer here is a transfer it could cut.
		d.metricsSrv = &http.Server{Handler: l7.AnswerFirst(mm), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: d.metricsWriteTimeout, IdleTimeout: d.metricsIdleTimeout, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
		capped := newMetricsListener(ml, d.log)
		d.metricsLn = capped
		d.metricsSrv.ConnState = capped.connState
		d.goServe(func() error { return d.metricsSrv.Serve(capped) })
	}
	if d.reload != nil {
		d.reloadMu.Lock()
		d.setWatch(c.WatchedFiles(), d.fileStates)
		d.reloadMu.Unlock()
		ctx, stop := context.WithCancel(context.Background())
		d.stopWatch = stop
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.watch(ctx)
		}()
	}
	d.startMemTrim()
	d.startCertClock()
	pctx, stopProbe := context.WithCancel(context.Background())
	d.stopProbe = stopProbe
	built.Upstreams.Set().Start(pctx, c.HealthInterval)
	d.goServe(d.server.ServeHTTPConns)
	d.goServe(func() error { return d.server.Serve(ln) })
	for _, b := range ports {
		d.goServe(func() error { return d.server.ServePort(b.ln, b.port) })
	}
	d.warn(built)
	d.log.Info("nexmux serving", "listen", ln.Addr().String(), "routes", built.Table.Len(), "upstream", strings.Join(c.Upstream, ","))
	return nil
}

// warn logs a configuration's warnings.
func (d *Daemon) warn(b *config.Runtime) {
	for _, w := range b.Warnings {
		d.log.Warn(config.HideCredentials(w))
	}
}

// warnChanged logs the warnings of b, a reload's configuration, that cur,
// the one it replaces, did not draw: a reload re-reads the files, not the
// environment or the command line, and their warnings repeated on every
// SIGHUP would bury what the reload changed. A certificate's are logged
// each time (its daily reminder counts from the last reload), and so is
// that a file key is overridden when the file changed its value: the edit
// changes nothing.
func (d *Daemon) warnChanged(cur, b *config.Runtime) {
	had := make(map[string]bool, len(cur.Warnings))
	for _, w := range cur.Warnings {
		had[w] = true
	}
	for name, w := range b.Overridden {
		if !reflect.DeepEqual(cur.Config.FileValues[name], b.Config.FileValues[name]) {
			had[w] = false
		}
	}
	certs := b.Certs.Warnings(config.CertExpiresSoon)
	for _, w := range b.Warnings {
		if !had[w] || slices.Contains(certs, w) {
			d.log.Warn(config.HideCredentials(w))
		}
	}
}

func (d *Daemon) goServe(f func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- err
		}
	}()
}

func (d *Daemon) closeListeners() {
	for _, l := range d.listeners {
		l.Close()
	}
}

// Addr returns a bound address: "listen", or "port:8082" for --bind-ports.
func (d *Daemon) Addr(name string) net.Addr { return d.addrs[name] }

// ReadConfig reads the configuration to start with, and the state of the
// files it names taken before the read it returns (Options.FileStates): a
// file that changes between this read and Start is then seen changed.
// The files are known only once read, so they are read twice.
func ReadConfig(read func() (*config.Runtime, error)) (*config.Runtime, map[string]string, error) {
	return readWatched(read, map[string]string{})
}

// readWatched reads the configuration with read; seen is the state of the
// watched files taken before the read and is returned completed. Files
// the configuration names that seen lacks had no state taken before they
// were read: their state is taken and the configuration read once more,
// or a file that changed (or turned up) in between would never be seen.
func readWatched(read func() (*config.Runtime, error), seen map[string]string) (*config.Runtime, map[string]string, error) {
	b, err := read()
	for range 2 {
		var fresh []string
		if b != nil && b.Config != nil {
			fresh = slices.DeleteFunc(b.Config.WatchedFiles(), func(f string) bool { _, ok := seen[f]; return ok })
		}
		if len(fresh) == 0 {
			break
		}
		maps.Copy(seen, statFiles(fresh))
		b, err = read()
	}
	return b, seen, err
}

// Reload re-reads the configuration and swaps routes and certificates for
// new connections. An invalid configuration is refused whole; the old one
// keeps serving.
func (d *Daemon) Reload() error {
	if d.reload == nil {
		return errors.New("reload is not configured")
	}
	// One reload at a time (SIGHUP and the file watcher may race): two
	// interleaved reloads could otherwise leave the older file in force.
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	return d.reloadLocked(statFiles(d.watchFiles))
}

// reloadLocked reloads under reloadMu. seen is the state of the watched
// files read before the configuration was: a file that changes while it
// is read is seen changed at the next check, and read again.
func (d *Daemon) reloadLocked(seen map[string]string) error {
	b, seen, err := readWatched(d.reload, maps.Clone(seen))
	// An invalid configuration that was read comes as a Runtime holding
	// only its Config (see Options.Reload).
	var next *config.Config
	if b != nil {
		next = b.Config
	}
	cur := d.currentBuilt()
	errs := []error{err}
	if next != nil {
		// Reported with the invalid values, if any: every reason to
		// refuse at once.
		changed := config.RestartNeeded(cur.Config, next)
		// A setting whose new value was refused keeps its value in
		// effect: its own error says so, "changed" would only mislead.
		invalid := invalidSettings(err)
		changed = slices.DeleteFunc(changed, func(c string) bool {
			name, _, _ := strings.Cut(c, " (")
			return invalid[name]
		})
		if err == nil && b.AffinitySecretSum != cur.AffinitySecretSum && !slices.Contains(changed, "affinity-secret-file") {
			// Same file, new secret: the running node set signs with
			// the one it started with.
			changed = append(changed, "affinity-secret-file (the file's secret)")
		}
		if len(changed) > 0 {
			errs = append(errs, fmt.Errorf("these settings changed and need a restart: %s", strings.Join(changed, ", ")))
		}
		spec := b.UpstreamSpec
		if err != nil {
			spec, _ = upstream.ParseSpec(next.Upstream, next.DrainUpstream)
		}
		if spec != nil {
			errs = append(errs, cur.Upstreams.Set().CheckUpdate(spec))
		}
	}
	if err = errlist.Join(errs...); err == nil {
		// The running node set takes the new node list; the new
		// configuration keeps using it.
		live := cur.Upstreams
		if err = live.Set().Update(b.UpstreamSpec); err == nil {
			b.Upstreams = live
		}
	}
	if err != nil {
		d.metrics.Reloaded(false)
		// Watch the files the refused configuration names too: a
		// certificate or secret that is not there yet (the kubelet may
		// update a ConfigMap before the Secret it names) retries the
		// reload when it turns up.
		files := cur.Config.WatchedFiles()
		if next != nil {
			files = append(files, next.WatchedFiles()...)
		}
		d.setWatch(files, seen)
		d.log.Error("reload refused; still serving the previous configuration", "err", config.HideCredentials(err.Error()))
		return err
	}
	d.metrics.Reloaded(true)
	d.proxy.SetMirrorAuth(b.MirrorAuth)
	d.server.Update(stateOf(b))
	// The new SOCKS5 users first, then Revoke: a client whose CONNECT
	// comes after the login checks its user against the new ones.
	d.mu.Lock()
	d.built = b
	d.mu.Unlock()
	if d.socks != nil && b.Socks5Credentials != nil {
		d.socks.Revoke(b.Socks5Credentials)
	}
	d.setWatch(b.Config.WatchedFiles(), seen)
	select {
	case d.certsSwapped <- struct{}{}:
	default:
	}
	d.warnChanged(cur, b)
	d.log.Info("reloaded", "routes", b.Table.Len())
	return nil
}

// invalidSettings names the settings whose value err (a read's, every
// problem of it) refuses.
func invalidSettings(err error) map[string]bool {
	names := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		switch l := e.(type) {
		case nil:
		case interface{ WrappedErrors() []error }: // *multierror.Error
			for _, e := range l.WrappedErrors() {
				walk(e)
			}
		case interface{ Unwrap() []error }:
			for _, e := range l.Unwrap() {
				walk(e)
			}
		default:
			var se *config.SettingError
			if errors.As(e, &se) {
				names[se.Setting] = true
			}
		}
	}
	walk(err)
	return names
}

// Shutdown stops accepting and drains in-flight requests until ctx ends.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if d.stopWatch != nil {
		d.stopWatch()
	}
	if d.stopTrim != nil {
		d.stopTrim()
	}
	if d.stopCerts != nil {
		d.stopCerts()
	}
	d.proxy.DrainBegan()
	// The SOCKS streams end when the router closes their routed side:
	// both drain at once.
	socksDone := make(chan struct{})
	go func() {
		defer close(socksDone)
		if d.socks != nil {
			_ = d.socks.Shutdown(ctx)
		}
	}()
	// The server closes what is left once sctx ends, which is only after
	// the proxy knows the drain's time is up: the transfers cut then are
	// logged as cut by the drain, not as their clients' errors.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cutEnd atomic.Int64 // when awaitCut gives up, from the cut on
	stopCut := context.AfterFunc(ctx, func() {
		end := time.Now().Add(CutGrace)
		cutEnd.Store(end.UnixNano())
		d.proxy.DrainEnded()
		// The handlers the cut woke answer on connections still open
		// (503, Retry-After: 1), which then close (keep-alives are off):
		// closing them at once would lose the answers. Half the grace, so
		// those stuck on a stalled client still end, and are logged,
		// within it; a second signal (Canceled) closes at once.
		for half := time.Now().Add(CutGrace / 2); ctx.Err() == context.DeadlineExceeded && (d.proxy.Handling() > 0 || d.server.HTTPConns() > 0) && time.Now().Before(half); {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	})
	defer stopCut()
	err := d.server.Shutdown(sctx)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if ctx.Err() != nil {
		<-sctx.Done() // the cut has run
		d.awaitCut(time.Unix(0, cutEnd.Load()))
	}
	<-socksDone
	// Only now: the requests in flight during the drain move off a node
	// the probes find down, as they do while nexmux serves.
	if d.stopProbe != nil {
		d.stopProbe()
	}
	// No request is left to reuse the connections to Nexus.
	d.proxy.CloseIdleConnections()
	if d.metricsSrv != nil {
		_ = d.metricsSrv.Close()
	}
	d.wg.Wait()
	return err
}

// CutGrace: cut requests end within moments, but one stuck elsewhere must
// not hold up the exit. A supervisor's stop timeout must cover it too.
const CutGrace = 2 * time.Second

// awaitCut waits, until end (CutGrace from the cut), for the requests
// the drain's end cut to end, so that their access lines and metrics are not lost at exit: the
// HTTP/1 connections (let go once their handler returned), the requests
// holding a Nexus connection, and every handler (an HTTP/2 connection is
// let go before the handlers its close woke have run).
func (d *Daemon) awaitCut(end time.Time) {
	for d.server.HTTPConns() > 0 || d.proxy.NexusInFlight() > 0 || d.proxy.Handling() > 0 {
		if time.Now().After(end) {
			d.log.Warn("requests cut at the drain's end still running at exit", "http_conns", d.server.HTTPConns(), "nexus_requests", d.proxy.NexusInFlight(), "handlers", d.proxy.Handling())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DefaultWatchInterval is how often watched files are checked. Polling a
// stat follows symlinks, so it sees Kubernetes' atomic ..data symlink swap of
// mounted secrets and config maps, which inotify on the file itself misses.
const DefaultWatchInterval = 2 * time.Second

// fileState identifies the current content of a watched file.
func fileState(f string) string {
	fi, err := os.Stat(f)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d:%d:%s", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
}

// statFiles is the state of each of files.
func statFiles(files []string) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		m[f] = fileState(f)
	}
	return m
}

// setWatch makes files the watched ones (under reloadMu), each as seen
// holds it, or as it is now when seen does not.
func (d *Daemon) setWatch(files []string, seen map[string]string) {
	files = slices.Clone(files)
	slices.Sort(files)
	d.watchFiles = slices.Compact(files)
	d.watchPending = nil
	d.watchSeen = make(map[string]string, len(d.watchFiles))
	for _, f := range d.watchFiles {
		st, ok := seen[f]
		if !ok {
			st = fileState(f)
		}
		d.watchSeen[f] = st
	}
}

// watch reloads when a watched file changes, until ctx ends. The watched
// files are the running configuration's and, after a refused reload, the
// refused configuration's too.
func (d *Daemon) watch(ctx context.Context) {
	t := time.NewTicker(d.watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.pollWatched()
	}
}

// pollWatched reloads when a watched file has changed and then stayed as it
// is for one poll interval. A file caught while being written (truncated,
// then filled; a certificate renewed before its key) can parse as a valid
// configuration with routes missing, and applying it would revoke their
// live connections until the next poll put them back.
func (d *Daemon) pollWatched() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	now := statFiles(d.watchFiles)
	i := slices.IndexFunc(d.watchFiles, func(f string) bool { return now[f] != d.watchSeen[f] })
	switch {
	case i < 0:
		d.watchPending = nil
	case !maps.Equal(now, d.watchPending):
		d.watchPending = now
	default:
		d.log.Info("watched file changed; reloading", "file", d.watchFiles[i])
		_ = d.reloadLocked(now)
	}
}

// DefaultMemTrimInterval is how often the memory trimmer samples the runtime.
const DefaultMemTrimInterval = 250 * time.Millisecond

// startMemTrim returns freed memory to the OS once traffic goes quiet
// (internal/memtrim: idle TLS connections are most of nexmux's memory, and
// the handshakes that opened them leave garbage and GC headroom behind).
// --no-memory-trim is read at each due trim, so a reload applies it.
func (d *Daemon) startMemTrim() {
	ctx, stop := context.WithCancel(context.Background())
	d.stopTrim = stop
	policy, interval := d.memTrimPolicy, d.memTrimInterval
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		memtrim.Run(ctx, policy, interval,
			func() bool { return !d.currentConfig().NoMemoryTrim },
			func(before, after memtrim.Sample, took time.Duration) {
				var returned uint64
				if b, a := before.Held(), after.Held(); b > a {
					returned = b - a
				}
				d.metrics.MemoryTrimmed(returned)
				d.log.Debug("traffic quiet: returned freed memory to the OS", "mib", returned>>20, "live_mib", after.Live>>20, "took", took)
			})
	}()
}

func (d *Daemon) currentConfig() *config.Config { return d.currentBuilt().Config }

func (d *Daemon) currentBuilt() *config.Runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.built
}

// Run starts the daemon and blocks until SIGTERM/SIGINT (drain, then exit)
// or a listener fails. SIGHUP reloads.
func (d *Daemon) Run(ctx context.Context) error {
	// SIGHUP has a channel of its own: os/signal drops a signal whose
	// channel is full, and SIGHUPs queued behind a slow reload would drop
	// the SIGTERM that follows them. One pending SIGHUP stands for any
	// number: the reload it brings reads the newest configuration.
	// Both are taken before Start logs "nexmux serving": a signal sent
	// once that line is out waits here rather than being dropped (or, a
	// SIGTERM, ending the process undrained).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	if err := d.Start(); err != nil {
		return err
	}

	for {
		select {
		case <-hup:
			_ = d.Reload()
		case s := <-sig:
			return d.stop(s, sig, hup)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout())
			defer cancel()
			return d.Shutdown(sctx)
		case err := <-d.errc:
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = d.Shutdown(sctx)
			return err
		}
	}
}

func (d *Daemon) drainTimeout() time.Duration {
	if t := d.currentConfig().DrainTimeout; t > 0 {
		return t
	}
	return DefaultDrainTimeout
}

// stop answers the stop signal s: /readyz fails at once, keep-alive
// connections close after their next response, the listeners keep
// accepting for --shutdown-delay (so balancers that probe /readyz,
// or Kubernetes endpoints, stop sending before connections are refused),
// then in-flight requests drain for --drain-timeout. A further SIGTERM or
// SIGINT cuts the delay, or the drain, short; so does a listener that
// fails during the delay, whose error stop returns. A SIGHUP on hup (nil:
// none) reloads during the delay, while nexmux still accepts (the file
// watcher reloads then too); during the drain it is logged and ignored.
func (d *Daemon) stop(s os.Signal, sig, hup <-chan os.Signal) error {
	// Clients on keep-alive connections move to other replicas during the
	// delay too, instead of meeting the close when the drain starts.
	d.server.StopKeepAlives()
	d.draining.Store(true)
	c := d.currentConfig()
	var failed error
	if delay := c.ShutdownDelay; delay > 0 {
		d.log.Info("stopping: readiness off, still accepting", "signal", s.String(), "shutdown_delay", delay)
		dctx, dcancel := context.WithTimeout(context.Background(), delay)
		var next os.Signal
		next, failed = waitStop(sig, d.errc, dctx.Done(), hup, func() { _ = d.Reload() })
		dcancel()
		switch {
		case next != nil:
			d.log.Info("shutdown delay cut short", "signal", next.String())
		case failed != nil:
			d.log.Error("a listener failed during the shutdown delay", "err", failed)
		}
	}
	drain := d.drainTimeout()
	d.log.Info("draining", "signal", s.String(), "timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Shutdown(sctx) }()
	go func() {
		// Reads until Shutdown ends: signal.Stop comes after stop returns.
		ignore := func() { d.log.Warn("reload ignored: draining", "signal", syscall.SIGHUP.String()) }
		if next, _ := waitStop(sig, nil, sctx.Done(), hup, ignore); next != nil {
			d.log.Warn("second signal: closing remaining connections now", "signal", next.String())
			cancel()
		}
	}()
	if err := <-done; err != nil {
		d.log.Warn("drain ended before in-flight requests finished; closed remaining connections", "err", err)
	}
	cancel()
	return failed
}

// waitStop waits until done for SIGTERM or SIGINT on sig, or for an error
// on errc (nil: none), and returns which came; both nil when done came
// first. Each SIGHUP on hup (nil: none) runs onHUP meanwhile.
func waitStop(sig <-chan os.Signal, errc <-chan error, done <-chan struct{}, hup <-chan os.Signal, onHUP func()) (os.Signal, error) {
	for {
		select {
		case <-hup:
			onHUP()
		case s := <-sig:
			if s != syscall.SIGHUP {
				return s, nil
			}
		case err := <-errc:
			return nil, err
		case <-done:
			return nil, nil
		}
	}
}

// pendingCap is the SOCKS5 ingress's bound on sessions without a stream
// for --max-conns n (0: no limit).
func pendingCap(n int) int {
	if n <= 0 {
		return 0
	}
	return max(n/4, 16)
}
