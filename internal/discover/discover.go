// Package discover reads Nexus's repository settings over its REST API and
// turns them into nexmux mappings: one --port per connector port (so cut-over
// needs no client change), one host name per repository under a domain, and
// one name for both push and pull per team where a group has a single
// hosted member.
package discover

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// Repo is one entry of GET /service/rest/v1/repositorySettings.
type Repo struct {
	Name   string `json:"name"`
	Format string `json:"format"`
	Type   string `json:"type"`
	Online *bool  `json:"online"` // nil: not said (taken as online)
	Docker *struct {
		V1Enabled      bool    `json:"v1Enabled"`
		ForceBasicAuth bool    `json:"forceBasicAuth"`
		HTTPPort       *int    `json:"httpPort"`
		HTTPSPort      *int    `json:"httpsPort"`
		Subdomain      *string `json:"subdomain"`
	} `json:"docker"`
	Group *struct {
		MemberNames []string `json:"memberNames"`
	} `json:"group"`
	Proxy *struct {
		RemoteURL string `json:"remoteUrl"`
	} `json:"proxy"`
}

// Errors callers can tell apart.
var (
	ErrUnauthorized = errors.New("nexus refused the credentials (401): check --user and --password-file")
	// repositorySettings lists only what the user may read the settings
	// of, so an empty answer may be a missing privilege.
	ErrNoDocker = errors.New("nexus listed no docker repositories: it has none, or --user may not read their settings (repositorySettings lists only repositories with privilege nx-repository-admin-docker-<repo>-read, e.g. nx-repository-admin-docker-*-read, or nx-admin)")
)

// Fetch reads the repository settings of the Nexus at base
// ("http://nexus:8081[/ctx]").
func Fetch(ctx context.Context, client *http.Client, base, user, password string) ([]Repo, error) {
	repos, err := fetch(ctx, client, base, user, password)
	if err != nil {
		err = hideCredentials(err, user, password)
	}
	return repos, err
}

// credentialsHidden is an error whose text had the credentials in it.
type credentialsHidden struct {
	msg string
	err error
}

func (e *credentialsHidden) Error() string { return e.msg }
func (e *credentialsHidden) Unwrap() error { return e.err }

// hideCredentials is err without the password or the Authorization value
// in its text: an error quotes what the answer held (its body, its
// Content-Type, a malformed header), and something in front of Nexus may
// echo the request. A password under 4 bytes is left, as hiding it would
// garble every word holding it and hide next to nothing.
func hideCredentials(err error, user, password string) error {
	msg := err.Error()
	hidden := strings.ReplaceAll(msg, base64.StdEncoding.EncodeToString([]byte(user+":"+password)), "xxxxx")
	if len(password) >= 4 {
		hidden = strings.ReplaceAll(hidden, password, "xxxxx")
	}
	if hidden == msg {
		return err
	}
	return &credentialsHidden{msg: hidden, err: err}
}

func fetch(ctx context.Context, client *http.Client, base, user, password string) ([]Repo, error) {
	u, err := nexusURL(base)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	// No redirect is followed: Go sends Authorization on to another port
	// or scheme of the same host, and serve would proxy to this URL, which
	// redirects, not to where the settings came from.
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &noRedirect
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/service/rest/v1/repositorySettings", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// Reached, but not trusted: a private CA is the usual cause, and
		// discover has no CA flag (serve has none either).
		if cve := (*tls.CertificateVerificationError)(nil); errors.As(err, &cve) {
			return nil, fmt.Errorf("nexus at %s presented a certificate this machine does not trust: %v; for a private CA, name its certificate in SSL_CERT_FILE (or a directory of them in SSL_CERT_DIR), for discover and serve alike", u.Redacted(), cve.Err)
		}
		// Reached, but no TLS came back: https:// for Nexus's plain port
		// (8081 is plain by default) is the usual cause.
		if rhe := (tls.RecordHeaderError{}); errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &rhe) {
			return nil, fmt.Errorf("nexus at %s does not speak TLS on that port (is it Nexus's plain HTTP port? then give --nexus as http://): %w", u.Redacted(), err)
		}
		// Connected but no answer (a hung JVM, a full thread pool) is not
		// "unreachable": say which limit ended the wait.
		var ne net.Error
		if op := (*net.OpError)(nil); errors.As(err, &ne) && ne.Timeout() && !(errors.As(err, &op) && op.Op == "dial") {
			return nil, fmt.Errorf("nexus at %s did not answer in time (%v): %w", u.Redacted(), client.Timeout, err)
		}
		// Connected, and answered or hung up: reached, so not
		// "unreachable" either.
		if malformedAnswer(err) {
			return nil, fmt.Errorf("nexus at %s sent a malformed HTTP response (is --nexus the URL of Nexus's HTTP port, with https for a TLS port?): %w", u.Redacted(), err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("nexus at %s closed the connection without an answer (is --nexus the URL of Nexus's HTTP port, with https for a TLS port?): %w", u.Redacted(), err)
		}
		return nil, fmt.Errorf("nexus at %s is unreachable: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, ErrUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		// Not a wrong password: the user was taken and refused, or
		// something in front of Nexus refuses the request.
		return nil, fmt.Errorf("nexus at %s answered 403 Forbidden: --user may not use the REST API (it needs nx-repository-admin-docker-*-read or nx-admin), or something in front of Nexus refuses the request", u.Redacted())
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		where := "elsewhere"
		if loc, err := resp.Location(); err == nil {
			loc.RawQuery, loc.Fragment = "", ""
			where = safeText(loc.Redacted())
		}
		return nil, fmt.Errorf("nexus at %s answered %s, a redirect to %s: not followed (the credentials would go with it, and serve would proxy to the redirecting URL); give --nexus as the URL Nexus answers at itself", u.Redacted(), safeText(resp.Status), where)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("nexus at %s has no /service/rest/v1/repositorySettings (404): Nexus 3.x with the REST API is needed, or the context path is wrong", u.Redacted())
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("nexus answered %s: %s", safeText(resp.Status), safeText(strings.TrimSpace(string(body))))
	}
	var list *[]*Repo // nil, or with a nil item: JSON null, not a list of repositories
	cut := &readErr{r: resp.Body}
	body := &io.LimitedReader{R: cut, N: maxSettings + 1}
	dec := json.NewDecoder(body)
	err = dec.Decode(&list)
	after := false
	switch {
	case err != nil:
	case list == nil:
		err = errors.New("null, not a list")
	case slices.Contains(*list, nil):
		err = fmt.Errorf("item %d of the list is null, not a repository", slices.Index(*list, nil)+1)
	}
	if err == nil {
		// Nexus sends one list: more after it (two run together, a page
		// something in front appended) would leave a mapping made from
		// the first part, printed as whole.
		if _, err = dec.Token(); err == io.EOF {
			err = nil
		} else {
			after = true
			if err == nil {
				err = errors.New("another JSON value")
			}
		}
	}
	if err != nil {
		// Say which limit ended it: a cut body or a stalled one is not a
		// JSON problem of Nexus's.
		var ne net.Error
		switch {
		case body.N == 0:
			return nil, fmt.Errorf("nexus repository settings are larger than %d MiB: refused", maxSettings>>20)
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("nexus at %s did not send its repository settings in time: %w", u.Redacted(), err)
		case after:
			return nil, fmt.Errorf("nexus repository settings have more after the list (%v): not the one list Nexus sends; is something in front of Nexus adding to its answer?", err)
		case cut.err != nil:
			// The body ended before its Content-Length or last chunk:
			// the answer was cut, not badly made.
			return nil, fmt.Errorf("nexus at %s closed the connection before its repository settings ended (cut short: was Nexus restarting, or does something in front of it cut long answers?): %w", u.Redacted(), cut.err)
		}
		// An SSO login page or a front proxy's HTML says more by its type
		// than by the parser's "invalid character '<'".
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
				return nil, fmt.Errorf("nexus at %s answered %s, not JSON (is something in front of Nexus, such as a login page or a proxy, or is --nexus not Nexus's URL?): %w", u.Redacted(), safeText(ct), err)
			}
		}
		return nil, fmt.Errorf("nexus repository settings are not the expected JSON: %w", err)
	}
	repos := make([]Repo, len(*list))
	for i, r := range *list {
		repos[i] = *r
	}
	return repos, nil
}

// readErr keeps the error of the body's reads other than io.EOF, which
// json.Decoder would otherwise report alike for a cut body and a whole
// body holding a cut list (io.ErrUnexpectedEOF).
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// malformedAnswer reports a client error for an answer that is no HTTP
// response: a header line without a colon (textproto), a status line or
// Content-Length net/http could not read. net/http's types for the latter
// are unexported; its words are the only mark.
func malformedAnswer(err error) bool {
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "malformed HTTP") || strings.Contains(msg, "malformed MIME") || strings.Contains(msg, "bad Content-Length")
}

// CheckNexusURL is the --nexus check Fetch makes, for the command to list
// with the other flag problems before anything is read or sent.
func CheckNexusURL(base string) error {
	_, err := nexusURL(base)
	return err
}

func nexusURL(base string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("nexus URL %s: want http(s)://host[:port][/context]", safeText(upstream.HideUserinfo(base)))
	}
	// The URL is printed as --upstream: refuse here what serve would refuse
	// there (credentials, which would be printed too, a query, a fragment,
	// a context path with dot segments), without echoing a password.
	if _, _, _, _, err := upstream.Normalise(base); err != nil {
		u.RawQuery, u.Fragment = "", ""
		return nil, fmt.Errorf("nexus URL %s: %v; want http(s)://host[:port][/context]", u.Redacted(), err)
	}
	return u, nil
}

// defaultListenPort is --listen's default port (:8443).
const defaultListenPort = 8443

// maxSettings bounds the repositorySettings answer read: thousands of
// repositories fit many times over.
var maxSettings int64 = 64 << 20 // a variable for the tests

// Connector is a Nexus connector port that nexmux takes over.
type Connector struct {
	Repo   string
	Port   int
	Scheme string // http or https
}

// Plan is the mapping discover proposes.
type Plan struct {
	// Upstream is the Nexus the plan was read from (--upstream), so that
	// the printed configuration points nexmux at the same Nexus.
	Upstream string
	// Listen is the --listen the plan needs, "" for the default :8443; set
	// when a connector holds 8443, as a port route on the listener's own
	// port is refused (it would shadow every --route).
	Listen     string
	ListenNote string      // why Listen is set
	Routes     []string    // --route values
	Ports      []string    // --port values
	Connectors []Connector // removable from Nexus after cut-over
	Skipped    []string    // "name (format)" of repositories that are not docker
	Teams      []string    // "group: pull group, push hosted" notes
	// Unpaired are "group: why" of groups left unpaired because Nexus did
	// not list all their members.
	Unpaired []string
	// NoHost are "name: why" of repositories whose name makes no host
	// name under the domain (Nexus allows "team-", "a..b", 64+ characters).
	NoHost []string
	// Offline names docker repositories Nexus has offline: they are
	// routed, and answer 503 until brought online.
	Offline []string
	// Mirrors are "REGISTRY=REPO" for docker proxy repositories, rendered
	// as --mirror MirrorHost/REGISTRY=REPO; MirrorNotes say what was left out.
	Mirrors     []string
	MirrorHost  string
	MirrorNotes []string
	proxies     []string // the notes of the repositories in Mirrors, also without a domain
}

// MakePlan builds the mapping. With a domain every docker repository gets
// "<repo>.<domain>"; a group with exactly one hosted member serves pushes
// into that member under the group's names and ports (Nexus OSS refuses
// pushes to groups, so this gives each team one name for both).
func MakePlan(repos []Repo, domain string) (*Plan, error) {
	p := &Plan{}
	byName := map[string]Repo{}
	var docker []Repo
	// Every problem is listed at once, as for a configuration.
	var errs []error
	for _, r := range repos {
		if r.Format != "docker" {
			p.Skipped = append(p.Skipped, fmt.Sprintf("%s (%s)", safeText(r.Name), safeText(r.Format)))
			continue
		}
		if err := route.ValidRepoName(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("repository %q: %v", r.Name, err))
			continue
		}
		byName[r.Name] = r
		docker = append(docker, r)
		if r.Online != nil && !*r.Online {
			p.Offline = append(p.Offline, safeText(r.Name))
		}
	}
	sort.Strings(p.Offline)
	if len(docker) == 0 && len(errs) == 0 {
		if len(p.Skipped) == 0 {
			return nil, ErrNoDocker
		}
		// Named: the user may read these, so it is docker's privilege
		// that is missing, or Nexus has no docker repository at all.
		shown := p.Skipped
		more := ""
		if len(shown) > 5 {
			shown, more = shown[:5], fmt.Sprintf(" and %d more", len(p.Skipped)-5)
		}
		return nil, fmt.Errorf("%w; it listed only repositories of other formats: %s%s", ErrNoDocker, strings.Join(shown, ", "), more)
	}
	sort.Slice(docker, func(i, j int) bool { return docker[i].Name < docker[j].Name })
	// Checked once here: a bad domain would otherwise become a note on
	// every repository instead of one error.
	domain, err := normalDomain(domain)
	if err != nil {
		errs = append(errs, err)
		domain = "" // the ports are still checked
	}
	p.mirrors(docker, domain)
	portOwner := map[int]Connector{}
	hostOwner := map[string]string{}
	subOwner := p.subdomains(docker, domain)
	for _, r := range docker {
		target := r.Name
		if r.Type == "group" && r.Group != nil {
			var hosted, unlisted []string
			for _, m := range r.Group.MemberNames {
				if _, listed := byName[m]; !listed {
					unlisted = append(unlisted, safeText(m))
				} else if byName[m].Type == "hosted" {
					hosted = append(hosted, m)
				}
			}
			// repositorySettings leaves out what --user may not read: an
			// unlisted member may be another hosted one, so "exactly one"
			// is not known.
			if len(unlisted) > 0 {
				p.Unpaired = append(p.Unpaired, fmt.Sprintf("%s: members not listed by Nexus (may --user read their settings?): %s", safeText(r.Name), strings.Join(unlisted, ", ")))
			} else if len(hosted) == 1 {
				target = "pull:" + r.Name + ",push:" + hosted[0]
				p.Teams = append(p.Teams, fmt.Sprintf("%s: pulls through the group, pushes into %s", r.Name, hosted[0]))
			}
		}
		if domain != "" {
			host := strings.ToLower(r.Name) + "." + domain
			// One such name must not cost every other repository its
			// name: this one keeps its ports and is listed instead.
			_, err := route.NormalizePattern(host)
			if err == nil && strings.Contains(r.Name, "_") {
				err = fmt.Errorf("%w; give it a --route of your own", errUnderscore)
			}
			if err == nil && strings.Contains(r.Name, ".") {
				err = errDotted
			}
			if err != nil {
				p.NoHost = append(p.NoHost, fmt.Sprintf("%s: %v", r.Name, err))
			} else if owner, taken := subOwner[host]; taken && owner != r.Name {
				p.NoHost = append(p.NoHost, fmt.Sprintf("%s: %s is the subdomain of %s", r.Name, host, owner))
			} else if owner, taken := hostOwner[host]; taken {
				// Names differing only in case (or listed twice) make one
				// host: serve refuses a second route for it.
				p.NoHost = append(p.NoHost, fmt.Sprintf("%s: %s is the host name of %s", r.Name, host, owner))
			} else {
				p.Routes = append(p.Routes, host+"="+target)
				hostOwner[host] = r.Name
			}
			if r.Docker != nil && r.Docker.Subdomain != nil {
				sub := strings.ToLower(*r.Docker.Subdomain) + "." + domain
				if _, routed := hostOwner[sub]; subOwner[sub] == r.Name && sub != host && !routed {
					p.Routes = append(p.Routes, sub+"="+target)
					hostOwner[sub] = r.Name
				}
			}
		}
		if r.Docker == nil {
			continue
		}
		for _, c := range []struct {
			port   *int
			scheme string
		}{{r.Docker.HTTPPort, "http"}, {r.Docker.HTTPSPort, "https"}} {
			if c.port == nil {
				continue
			}
			// Nexus only reports ports it could bind (1-65535, one
			// connector each): anything else would print a --port
			// line and an iptables command that fail at cut-over.
			if *c.port < 1 || *c.port > 65535 {
				errs = append(errs, fmt.Errorf("repository %q: %s port %d is not 1-65535", r.Name, c.scheme, *c.port))
				continue
			}
			if prev, dup := portOwner[*c.port]; dup {
				errs = append(errs, fmt.Errorf("repository %q: %s port %d is also the %s port of %s", r.Name, c.scheme, *c.port, prev.Scheme, prev.Repo))
				continue
			}
			portOwner[*c.port] = Connector{Repo: r.Name, Port: *c.port, Scheme: c.scheme}
			p.Ports = append(p.Ports, strconv.Itoa(*c.port)+"="+target)
			p.Connectors = append(p.Connectors, Connector{Repo: r.Name, Port: *c.port, Scheme: c.scheme})
		}
	}
	// A repository called "mirror" already has mirror.<domain>, and a
	// mirror name cannot also be a route host: serve would refuse both.
	if owner, taken := hostOwner[p.MirrorHost]; taken && len(p.Mirrors) > 0 {
		p.MirrorNotes = append(p.MirrorNotes, fmt.Sprintf("%s is the host name of repository %s: no --mirror lines; give the mirrors a name of their own", p.MirrorHost, owner))
		p.Mirrors = nil
	}
	if err := errlist.Join(errs...); err != nil {
		return nil, err
	}
	if _, taken := portOwner[defaultListenPort]; taken {
		for _, port := range []int{443, 9443, 18443, 28443} {
			if _, taken := portOwner[port]; !taken {
				p.Listen = ":" + strconv.Itoa(port)
				break
			}
		}
		if p.Listen == "" {
			return nil, errors.New("connector ports take 8443, 443, 9443, 18443 and 28443: no listener port left for the printed configuration")
		}
		p.ListenNote = fmt.Sprintf("connector port %d of %s is nexmux's default --listen port, where routing is by server name: this configuration listens on %s instead", defaultListenPort, portOwner[defaultListenPort].Repo, p.Listen)
	}
	// serve refuses a configuration without routes: say what is missing
	// instead of printing one and exiting 0.
	if len(p.Routes) == 0 && len(p.Ports) == 0 && len(p.Mirrors) == 0 {
		if domain == "" && len(p.proxies) > 0 {
			// A pull-through mirror's Nexus: say what --domain would give.
			return nil, fmt.Errorf("nothing to route: no docker repository has a connector port (httpPort/httpsPort); give --domain to name each repository <repo>.DOMAIN and the registry mirror mirror.DOMAIN of the docker proxy repositories: %s", strings.Join(p.proxies, "; "))
		}
		if domain == "" {
			return nil, errors.New("nothing to route: no docker repository has a connector port (httpPort/httpsPort); give --domain to name each repository <repo>.DOMAIN")
		}
		return nil, fmt.Errorf("nothing to route: no docker repository has a connector port, and none makes a host name under %s: %s", domain, strings.Join(p.NoHost, "; "))
	}
	return p, nil
}

// errUnderscore: route hosts may hold '_' (internal DNS does), but docker's
// reference grammar takes only letters, digits and '-' in a registry's
// labels, and CAs issue no certificate for it: nobody could pull by it.
var errUnderscore = errors.New("'_' is not allowed in a registry host name (docker's reference grammar and certificate authorities refuse it)")

// CheckDomain is the --domain check, for the command to make before Nexus
// is asked: a bad one is the operator's, known without the answer.
func CheckDomain(domain string) error {
	_, err := normalDomain(domain)
	return err
}

// normalDomain is the --domain every host name is built on: blanks and
// dots around it trimmed, lower case, as the check sees it, so a value
// that passes the check never yields a host serve refuses.
func normalDomain(domain string) (string, error) {
	// Twice: blanks and dots may come in either order (". example.com").
	trimmed := strings.Trim(strings.TrimSpace(domain), ".")
	trimmed = strings.TrimSpace(strings.Trim(trimmed, "."))
	if trimmed == "" {
		return "", nil
	}
	norm, err := route.NormalizePattern(trimmed)
	if err == nil && strings.Contains(norm, "*") {
		err = errors.New("a domain, not a pattern")
	}
	if err == nil && strings.Contains(norm, "_") {
		err = errUnderscore
	}
	if err != nil {
		return "", fmt.Errorf("--domain %q: %v", domain, err)
	}
	return norm, nil
}

// errDotted: <repo>.<domain> for a name with '.' lies deeper than the
// *.<domain> wildcard certificate covers, and serve refuses a route that no
// certificate covers: one such route would sink the whole configuration.
var errDotted = errors.New("'.' makes it a name more than one label below the domain, which a *.DOMAIN wildcard certificate does not cover (serve would refuse the configuration); give it a --route of your own, with a certificate for it")

// subdomains maps "<subdomain>.<domain>" to its repository for the
// repositories Nexus Pro's subdomain routing serves: their clients already
// pull by that name, which need not be the repository's, so it is kept and
// wins over another repository's own name. A subdomain that is no single
// label (a "*" would make a wildcard route) gets a note instead.
func (p *Plan) subdomains(docker []Repo, domain string) map[string]string {
	owner := map[string]string{}
	if domain == "" {
		return owner
	}
	for _, r := range docker {
		if r.Docker == nil || r.Docker.Subdomain == nil || *r.Docker.Subdomain == "" {
			continue
		}
		sub := *r.Docker.Subdomain
		host := strings.ToLower(sub) + "." + domain
		_, err := route.NormalizePattern(host)
		if err == nil && strings.ContainsAny(sub, ".*") {
			err = errors.New("not a single DNS label")
		}
		if err == nil && strings.Contains(sub, "_") {
			err = fmt.Errorf("%w; give it a --route of your own", errUnderscore)
		}
		if err != nil {
			p.NoHost = append(p.NoHost, fmt.Sprintf("subdomain %q of %s: %v", sub, r.Name, err))
			continue
		}
		if prev, dup := owner[host]; dup {
			p.NoHost = append(p.NoHost, fmt.Sprintf("subdomain %q of %s: already the subdomain of %s", sub, r.Name, prev))
			continue
		}
		owner[host] = r.Name
	}
	return owner
}

// Flags renders the plan as command-line flags.
func (p *Plan) Flags() string {
	var b strings.Builder
	p.header(&b)
	var args []string
	if p.Listen != "" {
		args = append(args, "--listen "+shellQuote(p.Listen))
	}
	if p.Upstream != "" {
		args = append(args, "--upstream "+shellQuote(p.Upstream))
	}
	for _, r := range p.Routes {
		args = append(args, "--route "+shellQuote(r))
	}
	for _, r := range p.Ports {
		args = append(args, "--port "+shellQuote(r))
	}
	for _, m := range p.Mirrors {
		args = append(args, "--mirror "+shellQuote(p.MirrorHost+"/"+m))
	}
	b.WriteString(strings.Join(args, " \\\n"))
	b.WriteString("\n")
	return b.String()
}

// shellQuote is s as one shell word: the --nexus URL is the operator's
// text (a context path may hold a quote, which serve accepts), and a bare
// quote would end the word and run the rest.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// YAML renders the plan as a --config file: the keys are the long flag
// names, the values the strings the flags take.
func (p *Plan) YAML() string {
	var b strings.Builder
	p.header(&b)
	list := func(key string, vals []string) {
		if len(vals) == 0 {
			return
		}
		b.WriteString(key + ":\n")
		for _, v := range vals {
			b.WriteString("  - " + strconv.Quote(v) + "\n")
		}
	}
	if p.Listen != "" {
		b.WriteString("listen: " + strconv.Quote(p.Listen) + "\n")
	}
	if p.Upstream != "" {
		list("upstream", []string{p.Upstream})
	}
	list("route", p.Routes)
	list("port", p.Ports)
	var mirrors []string
	for _, m := range p.Mirrors {
		mirrors = append(mirrors, p.MirrorHost+"/"+m)
	}
	list("mirror", mirrors)
	return b.String()
}

// safeText is text from Nexus as a comment line or a terminal may show it:
// quoted when it has a character strconv.Quote escapes, since it is not
// validated: a line break (YAML also ends a comment at NEL and LS) would
// start a line of configuration of its own, an escape sequence would drive
// the operator's terminal.
func safeText(s string) string {
	if q := strconv.Quote(s); q != `"`+s+`"` {
		return q
	}
	return s
}

func (p *Plan) header(b *strings.Builder) {
	if len(p.MirrorNotes) > 0 {
		b.WriteString("# registry mirrors (docker proxy repositories and their remote):\n")
		for _, n := range p.MirrorNotes {
			fmt.Fprintf(b, "#   %s\n", n)
		}
	}
	if p.ListenNote != "" {
		fmt.Fprintf(b, "# %s\n", p.ListenNote)
	}
	for _, t := range p.Teams {
		fmt.Fprintf(b, "# one name per team: %s\n", t)
	}
	for _, u := range p.Unpaired {
		fmt.Fprintf(b, "# not paired for pushes: %s\n", u)
	}
	if len(p.Connectors) > 0 {
		b.WriteString("# connectors that can be removed from Nexus after cut-over:\n")
		var ports []string
		for _, c := range p.Connectors {
			fmt.Fprintf(b, "#   %s: %s port %d\n", c.Repo, c.Scheme, c.Port)
			ports = append(ports, "--port '"+strconv.Itoa(c.Port)+"="+c.Repo+"'")
		}
		// --load applies the rules for IPv4 and IPv6 alike, idempotently; a
		// pipe into iptables-restore alone would leave IPv6 clients out.
		b.WriteString("# redirect them to nexmux (IPv4 and IPv6; as root, where nexmux runs):\n")
		listen := p.Listen
		if listen == "" {
			listen = ":" + strconv.Itoa(defaultListenPort)
		}
		fmt.Fprintf(b, "#   nexmux iptables --listen %s %s --load\n", listen, strings.Join(ports, " "))
		// Without a --cert, serve takes port routes for plain HTTP only:
		// the printed mapping alone would be accepted, and every TLS
		// handshake on these ports refused at cut-over.
		var tlsPorts []string
		for _, c := range p.Connectors {
			if c.Scheme == "https" {
				tlsPorts = append(tlsPorts, fmt.Sprintf("%d (%s)", c.Port, c.Repo))
			}
		}
		if len(tlsPorts) > 0 {
			fmt.Fprintf(b, "# https connector ports %s: their clients connect with TLS, by the name they use for Nexus; give nexmux a --cert and --key for that name (without any --cert, port routes serve plain HTTP only; nexmux picks the certificate by SNI, else the first)\n", strings.Join(tlsPorts, ", "))
		}
	}
	for _, n := range p.NoHost {
		fmt.Fprintf(b, "# no host name for %s\n", n)
	}
	for _, n := range p.Offline {
		fmt.Fprintf(b, "# offline in Nexus: %s (routed; its requests get 503 until it is online)\n", n)
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(b, "# skipped, not docker: %s\n", s)
	}
}
