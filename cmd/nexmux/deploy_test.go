package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/upstream"
)

// deployFile reads a file of deploy/ (the packaging this binary ships with).
func deployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The nexmux image runs under the Kubernetes manifest's runAsNonRoot, which
// the kubelet can only verify for a numeric image user: a named one
// ("nonroot") fails the pod with CreateContainerConfigError.
func TestDockerfileUserIsNumeric(t *testing.T) {
	var stage, user string
	sc := bufio.NewScanner(strings.NewReader(deployFile(t, "Dockerfile")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS"):
			stage = f[3]
		case len(f) == 2 && strings.EqualFold(f[0], "USER") && stage == "nexmux":
			user = f[1]
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("target nexmux: USER %q: want a numeric non-root uid[:gid], which runAsNonRoot can verify", user)
	}
}

// serve calls mincore(2) at start (memtrim.NewHeapFloor), which systemd's
// @system-service set lacks: with an allow-list SystemCallFilter that does
// not add it, systemd kills nexmux with SIGSYS before it logs a line.
func TestSystemdUnitAllowsMincore(t *testing.T) {
	var allow, deny []string
	for _, line := range strings.Split(deployFile(t, "systemd/nexmux.service"), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "SystemCallFilter=")
		if !ok {
			continue
		}
		if rest, neg := strings.CutPrefix(v, "~"); neg {
			deny = append(deny, strings.Fields(rest)...)
		} else {
			allow = append(allow, strings.Fields(v)...)
		}
	}
	if len(allow) == 0 {
		return // no allow-list: nothing is killed for being unlisted
	}
	has := func(names []string) bool {
		for _, n := range names {
			if n == "mincore" {
				return true
			}
			if strings.HasPrefix(n, "@") {
				if members, err := syscallGroup(n); err == nil && members["mincore"] {
					return true
				}
			}
		}
		return false
	}
	if !has(allow) || has(deny) {
		t.Errorf("nexmux.service: SystemCallFilter allows %v, denies %v: mincore must be allowed", allow, deny)
	}
}

// syscallGroup expands a systemd syscall group with systemd-analyze, where
// installed.
func syscallGroup(name string) (map[string]bool, error) {
	out, err := exec.Command("systemd-analyze", "syscall-filter", name).Output()
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n")[1:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "@") {
			sub, err := syscallGroup(l)
			if err != nil {
				return nil, err
			}
			for k := range sub {
				m[k] = true
			}
			continue
		}
		m[l] = true
	}
	return m, nil
}

// iptables-legacy-restore creates its lock file, /run/xtables.lock: under
// ProtectSystem=strict /run is read-only, and before anything else has
// created the lock (early boot, the unit's place) it fails ("can't open
// lock file ... Read-only file system", status 4).
func TestIptablesUnitCanTakeTheXtablesLock(t *testing.T) {
	unit := deployFile(t, "systemd/nexmux-iptables.service")
	if !strings.Contains(unit, "\nProtectSystem=strict\n") {
		return
	}
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ReadWritePaths="); ok {
			for _, p := range strings.Fields(v) {
				if p == "/run" || p == "-/run" {
					return
				}
			}
		}
	}
	t.Error("nexmux-iptables.service: ProtectSystem=strict without ReadWritePaths=/run: iptables-legacy cannot create /run/xtables.lock")
}

// k8sContainer, k8sPod and k8sDoc are the parts of a Kubernetes manifest
// the deploy tests read.
type k8sContainer struct {
	Name            string
	Image           string
	ImagePullPolicy string `yaml:"imagePullPolicy"`
	Command         []string
	Args            []string
	Env             []struct {
		Name  string
		Value string
	}
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	Lifecycle struct {
		PreStop *struct {
			Exec *struct {
				Command []string
			}
			Sleep *struct {
				Seconds int
			}
		} `yaml:"preStop"`
	}
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	ReadinessProbe  *k8sProbe           `yaml:"readinessProbe"`
	LivenessProbe   *k8sProbe           `yaml:"livenessProbe"`
	SecurityContext *k8sSecurityContext `yaml:"securityContext"`
	Resources       struct {
		Requests map[string]string
		Limits   map[string]string
	}
}

// k8sSecurityContext holds the fields of a pod's or a container's
// securityContext the deploy tests read.
type k8sSecurityContext struct {
	FSGroup                  *int  `yaml:"fsGroup"`
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	SeccompProfile           *struct {
		Type string
	} `yaml:"seccompProfile"`
	Capabilities struct {
		Drop []string
		Add  []string
	}
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `yaml:"httpGet"`
	TimeoutSeconds int `yaml:"timeoutSeconds"`
}

type k8sPod struct {
	SecurityContext               k8sSecurityContext `yaml:"securityContext"`
	TerminationGracePeriodSeconds *int               `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []k8sContainer     `yaml:"initContainers"`
	Containers                    []k8sContainer
	Volumes                       []struct {
		Name      string
		ConfigMap *struct {
			Name string
		} `yaml:"configMap"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
		}
	}
}

type k8sDoc struct {
	Kind     string
	Metadata struct {
		Name string
	}
	Data map[string]string
	Spec struct {
		Template struct {
			Metadata struct {
				Labels map[string]string
			}
			Spec k8sPod
		}
		// A StatefulSet's.
		ServiceName          string `yaml:"serviceName"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string
			}
		} `yaml:"volumeClaimTemplates"`
		// A Service's (a workload's holds matchLabels).
		Selector                 map[string]any
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name       string
			Port       int
			TargetPort any `yaml:"targetPort"`
		}
	}
}

// manifests reads every document of deploy/kubernetes/*.yaml, and of the
// README's Kubernetes examples (its yaml blocks with an apiVersion), by
// file or block.
func manifests(t *testing.T) map[string][]k8sDoc {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no manifest in deploy/kubernetes")
	}
	texts := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[filepath.Base(f)] = b
	}
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(readRepoFile(t, "README.md"), -1) {
		if strings.Contains(m[1], "\napiVersion:") || strings.HasPrefix(m[1], "apiVersion:") {
			texts[fmt.Sprintf("README.md yaml block %d", i+1)] = []byte(m[1])
		}
	}
	out := map[string][]k8sDoc{}
	for name, b := range texts {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d k8sDoc
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[name] = append(out[name], d)
		}
	}
	return out
}

// servedConfig is the configuration a pod's `nexmux serve` container runs
// with: its --config file, read from the ConfigMap mounted where the flag
// points, then its NEXMUX_* environment for the two stop timeouts.
func servedConfig(t *testing.T, docs []k8sDoc, pod k8sPod, c k8sContainer) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	var path string
	for i, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if a == "--config" && i+1 < len(c.Args) {
			path = c.Args[i+1]
		}
	}
	if path != "" {
		text, found := "", false
		for _, m := range c.VolumeMounts {
			if filepath.Dir(path) != filepath.Clean(m.MountPath) {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name != m.Name || v.ConfigMap == nil {
					continue
				}
				for _, d := range docs {
					if d.Kind == "ConfigMap" && d.Metadata.Name == v.ConfigMap.Name {
						text, found = d.Data[filepath.Base(path)]
					}
				}
			}
		}
		if !found {
			t.Fatalf("container %s: --config %s is in no ConfigMap mounted there", c.Name, path)
		}
		f := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := cfg.ApplyFile(f); err != nil {
			t.Fatalf("container %s: %v", c.Name, err)
		}
	}
	for _, e := range c.Env {
		for name, p := range map[string]*time.Duration{"NEXMUX_SHUTDOWN_DELAY": &cfg.ShutdownDelay, "NEXMUX_DRAIN_TIMEOUT": &cfg.DrainTimeout} {
			if e.Name == name {
				d, err := time.ParseDuration(e.Value)
				if err != nil {
					t.Fatalf("container %s: %s=%q: %v", c.Name, name, e.Value, err)
				}
				*p = d
			}
		}
	}
	return cfg
}

// stopTime is how long a SIGTERM keeps nexmux's requests going to Nexus at
// most: --shutdown-delay, then --drain-timeout. The process may stay up
// daemon.CutGrace longer, for the requests the drain's end cut (their
// connections to Nexus closed) to be logged.
func stopTime(cfg *config.Config) time.Duration {
	drain := cfg.DrainTimeout
	if drain <= 0 {
		drain = daemon.DefaultDrainTimeout
	}
	return cfg.ShutdownDelay + drain
}

// preStopSleep is how long a container's preStop hook holds its SIGTERM
// back: a sleep action, or an exec of sleep N.
func preStopSleep(c k8sContainer) time.Duration {
	p := c.Lifecycle.PreStop
	switch {
	case p == nil:
		return 0
	case p.Sleep != nil:
		return time.Duration(p.Sleep.Seconds) * time.Second
	case p.Exec != nil && len(p.Exec.Command) == 2 && filepath.Base(p.Exec.Command[0]) == "sleep":
		n, err := strconv.Atoi(p.Exec.Command[1])
		if err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

// nexusStopTime is what a pod's grace period leaves Nexus for its own
// clean stop once nexmux has drained.
const nexusStopTime = 60 * time.Second

// Kubernetes sends SIGTERM to every container of a pod at once, unless a
// container's preStop hook holds it back. A Nexus beside nexmux that stops
// at once leaves nexmux's --shutdown-delay serving new connections to a
// Nexus that refuses them, and its drain waiting for transfers Nexus has
// already cut. So the container that nexmux's loopback --upstream points to
// must hold its SIGTERM back for nexmux's whole stop, and the grace period
// must still leave it time to stop cleanly after that.
func TestManifestNexusOutlivesNexmuxDrain(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			grace := 30 * time.Second // Kubernetes' default
			if pod.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			}
			for _, c := range pod.Containers {
				if len(c.Args) == 0 || c.Args[0] != "serve" {
					continue
				}
				cfg := servedConfig(t, docs, pod, c)
				stop := stopTime(cfg)
				if grace <= stop+daemon.CutGrace {
					t.Errorf("%s %s: terminationGracePeriodSeconds %v, not above nexmux's --shutdown-delay + --drain-timeout + the cut requests' wait %v", file, d.Metadata.Name, grace, stop+daemon.CutGrace)
				}
				for _, up := range cfg.Upstream {
					u, err := url.Parse(up)
					if err != nil || !(u.Hostname() == "localhost" || net.ParseIP(u.Hostname()) != nil && net.ParseIP(u.Hostname()).IsLoopback()) {
						continue
					}
					port, _ := strconv.Atoi(u.Port())
					for _, other := range pod.Containers {
						for _, p := range other.Ports {
							if p.ContainerPort != port || other.Name == c.Name {
								continue
							}
							checked++
							held := preStopSleep(other)
							if held < stop {
								t.Errorf("%s %s: container %s (nexmux's --upstream %s) gets SIGTERM after %v, before nexmux's --shutdown-delay + --drain-timeout %v are over: give it a preStop sleep of at least that", file, d.Metadata.Name, other.Name, up, held, stop)
							}
							if grace-held < nexusStopTime {
								t.Errorf("%s %s: terminationGracePeriodSeconds %v leaves container %s %v after its preStop, want %v at least", file, d.Metadata.Name, grace, other.Name, grace-held, nexusStopTime)
							}
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no manifest runs nexmux beside the Nexus it proxies to")
	}
}

// deployCommandLines returns every nexmux command line deploy/ runs, with
// where it comes from: the systemd units' Exec lines, the Dockerfile's
// nexmux entrypoint and command, the Kubernetes containers' args (through
// nexmux-iptables.sh for the init container: apply or delete), and the
// nexmux command lines of nexmux-iptables.sh itself.
func deployCommandLines(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, unit := range []string{"systemd/nexmux.service", "systemd/nexmux-iptables.service"} {
		for i, line := range strings.Split(deployFile(t, unit), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok || !strings.HasPrefix(k, "Exec") {
				continue
			}
			f := strings.Fields(strings.TrimLeft(v, "-@:+!"))
			if len(f) > 0 && filepath.Base(f[0]) == "nexmux" {
				out[fmt.Sprintf("%s:%d %s", unit, i+1, k)] = f[1:]
			}
		}
	}
	var stage string
	var entrypoint, cmd []string
	for _, line := range strings.Split(deployFile(t, "Dockerfile"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS"):
			stage = f[3]
		case len(f) >= 2 && stage == "nexmux" && (f[0] == "ENTRYPOINT" || f[0] == "CMD"):
			var list []string
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, f[0]))), &list); err != nil {
				t.Fatalf("Dockerfile: %s: want the exec (JSON) form: %v", line, err)
			}
			if f[0] == "ENTRYPOINT" {
				entrypoint = list
			} else {
				cmd = list
			}
		}
	}
	if len(entrypoint) != 1 || filepath.Base(entrypoint[0]) != "nexmux" {
		t.Fatalf("Dockerfile, target nexmux: ENTRYPOINT %q, want the nexmux binary alone", entrypoint)
	}
	out["Dockerfile CMD"] = cmd
	script := map[string][]string{}
	for i, line := range strings.Split(readRepoFile(t, "scripts/nexmux-iptables.sh"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ") shift && exec ")
		if !ok {
			continue
		}
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(rest), ";;"))
		if len(f) < 2 || f[0] != `"${NEXMUX:-nexmux}"` || f[len(f)-1] != `"$@"` {
			t.Fatalf("scripts/nexmux-iptables.sh:%d: %s: not the nexmux command line this test reads", i+1, line)
		}
		script[name] = f[1 : len(f)-1]
		out[fmt.Sprintf("scripts/nexmux-iptables.sh:%d %s", i+1, name)] = script[name]
	}
	// The script's own examples, through its apply|delete.
	for i, m := range regexp.MustCompile(`(?m)^#\s+nexmux-iptables\.sh (apply|delete)( .*)?$`).FindAllStringSubmatch(readRepoFile(t, "scripts/nexmux-iptables.sh"), -1) {
		if s, ok := script[m[1]]; ok {
			out[fmt.Sprintf("scripts/nexmux-iptables.sh example %d", i+1)] = append(slices.Clone(s), strings.Fields(m[2])...)
		}
	}
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				if len(c.Command) > 0 || len(c.Args) == 0 || !strings.HasPrefix(c.Image, "nexmux") {
					continue
				}
				args := c.Args
				if s, ok := script[args[0]]; ok {
					args = append(slices.Clone(s), args[1:]...)
				}
				out[fmt.Sprintf("%s %s container %s", file, d.Metadata.Name, c.Name)] = args
			}
		}
	}
	return out
}

// readRepoFile reads a file of the repository by its path from the root.
func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every command line the packaging runs names a real command and only
// flags that command defines: a flag misspelt in a unit or a manifest
// stops nexmux (exit 2) only once deployed.
func TestDeployCommandLinesUseRealFlags(t *testing.T) {
	lines := deployCommandLines(t)
	for _, want := range []string{"Dockerfile CMD", "nexus-with-nexmux.yaml nexus container nexmux", "nexus-with-nexmux.yaml nexus container nexmux-iptables"} {
		if _, ok := lines[want]; !ok {
			t.Errorf("no command line found for %s", want)
		}
	}
	for where, args := range lines {
		app := newApp()
		if len(args) == 0 || app.Command(args[0]) == nil {
			t.Errorf("%s: %q: no nexmux command", where, args)
			continue
		}
		rest, unknown, missing, stray := stripUnknownFlags(app, append([]string{"nexmux"}, args...))
		if len(unknown) > 0 || missing != "" || len(stray) > 0 {
			t.Errorf("%s: nexmux %s: unknown flags %q, flag without its value %q, arguments %q: nexmux %s takes none", where, args[0], unknown, missing, stray, args[0])
		}
		set := flag.NewFlagSet(args[0], flag.ContinueOnError)
		set.SetOutput(io.Discard)
		for _, f := range app.Command(args[0]).Flags {
			if err := f.Apply(set); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.Parse(rest[2:]); err != nil {
			t.Errorf("%s: %q: %v", where, args, err)
		} else if set.NArg() > 0 {
			t.Errorf("%s: %q: arguments %q after the flags: nexmux %s takes none", where, args, set.Args(), args[0])
		}
	}
}

// Every NEXMUX_* variable the packaging sets is one nexmux reads.
func TestDeployEnvironmentVariablesExist(t *testing.T) {
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Env()] = true
	}
	for _, c := range newApp().Commands {
		for _, f := range c.Flags {
			if e, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range e.GetEnvVars() {
					known[v] = true
				}
			}
		}
	}
	seen := 0
	check := func(where, name string) {
		if !strings.HasPrefix(name, "NEXMUX_") {
			return
		}
		seen++
		if !known[name] {
			t.Errorf("%s: %s is no nexmux flag's variable", where, name)
		}
	}
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				for _, e := range c.Env {
					check(fmt.Sprintf("%s container %s", file, c.Name), e.Name)
				}
			}
		}
	}
	for _, unit := range []string{"systemd/nexmux.service", "systemd/nexmux-iptables.service"} {
		for _, line := range strings.Split(deployFile(t, unit), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Environment="); ok {
				for _, kv := range strings.Fields(strings.ReplaceAll(v, `"`, "")) {
					name, _, _ := strings.Cut(kv, "=")
					check(unit, name)
				}
			}
		}
	}
	// The script's help lists the variables it passes on, one a line.
	for _, m := range regexp.MustCompile(`(?m)^#\s+(NEXMUX_[A-Z0-9_]+)\s`).FindAllStringSubmatch(readRepoFile(t, "scripts/nexmux-iptables.sh"), -1) {
		check("scripts/nexmux-iptables.sh", m[1])
	}
	if seen == 0 {
		t.Fatal("no NEXMUX_* variable found in the packaging")
	}
}

// With a single --upstream, /readyz probes Nexus when it is asked: two
// rounds of up to a second each (upstream.ReadyzWait). A kubelet that gives
// up first (timeoutSeconds, 1 s by default) fails a pod whose Nexus
// answers its status in 0.5-1 s, which nexmux itself counts as up, and
// takes it out of the Service. A reload can always leave one node, so
// every /readyz probe must wait longer than that.
func TestManifestReadinessProbeOutlastsReadyz(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			for _, c := range d.Spec.Template.Spec.Containers {
				p := c.ReadinessProbe
				if len(c.Args) == 0 || c.Args[0] != "serve" || p == nil || p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/readyz") {
					continue
				}
				checked++
				timeout := time.Second // Kubernetes' default
				if p.TimeoutSeconds > 0 {
					timeout = time.Duration(p.TimeoutSeconds) * time.Second
				}
				if timeout <= upstream.ReadyzWait {
					t.Errorf("%s %s container %s: readinessProbe timeoutSeconds %v, not above the %v /readyz may take to probe a lone Nexus node", file, d.Metadata.Name, c.Name, timeout, upstream.ReadyzWait)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no nexmux container with a /readyz readiness probe")
	}
}

// portOf is the container port a probe's or a Service's port names: a
// number, or a container port's name.
func portOf(t *testing.T, c k8sContainer, p any) int {
	t.Helper()
	switch v := p.(type) {
	case int:
		return v
	case string:
		for _, cp := range c.Ports {
			if cp.Name == v {
				return cp.ContainerPort
			}
		}
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		t.Errorf("container %s has no port named %q", c.Name, v)
	}
	return 0
}

// The ports of a manifest agree with what nexmux listens on: the probes
// reach the metrics listener, the Services' ports reach the fan-in
// listener, each legacy connector port the iptables init container
// redirects, or another container's port, and every legacy port has a
// Service port.
func TestManifestPortsMatchListeners(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			for _, c := range pod.Containers {
				if len(c.Args) == 0 || c.Args[0] != "serve" {
					continue
				}
				checked++
				where := fmt.Sprintf("%s %s container %s", file, d.Metadata.Name, c.Name)
				cfg := servedConfig(t, docs, pod, c)
				for _, e := range c.Env {
					if e.Name == config.EnvVar("metrics-listen") {
						cfg.MetricsListen = strings.ReplaceAll(e.Value, "$(POD_IP)", "10.0.0.7")
					}
				}
				_, mport, err := net.SplitHostPort(cfg.MetricsListen)
				if err != nil {
					t.Fatalf("%s: metrics-listen %q: %v", where, cfg.MetricsListen, err)
				}
				metrics, _ := strconv.Atoi(mport)
				for name, p := range map[string]*k8sProbe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
					if p == nil || p.HTTPGet == nil {
						t.Errorf("%s: no %s over HTTP", where, name)
						continue
					}
					if got := portOf(t, c, p.HTTPGet.Port); got != metrics {
						t.Errorf("%s: %s on port %d, but --metrics-listen is %s", where, name, got, cfg.MetricsListen)
					}
					if path, _, _ := strings.Cut(p.HTTPGet.Path, "?"); path != "/readyz" && path != "/healthz" {
						t.Errorf("%s: %s on %s: the metrics listener serves /healthz and /readyz", where, name, p.HTTPGet.Path)
					}
				}
				listen, routes, err := cfg.PortRoutes()
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				redirected := false
				for _, ic := range pod.InitContainers {
					redirected = redirected || len(ic.Args) > 0 && ic.Args[0] == "apply"
				}
				legacy := map[int]bool{}
				if redirected {
					for _, p := range routes.Ports() {
						legacy[p] = true
					}
				}
				served := map[int]string{listen: "the fan-in listener"}
				for p := range legacy {
					served[p] = "a legacy port the init container redirects"
				}
				for _, other := range pod.Containers {
					if other.Name == c.Name {
						continue
					}
					for _, p := range other.Ports {
						served[p.ContainerPort] = "container " + other.Name
					}
				}
				for _, svc := range docs {
					if svc.Kind != "Service" || len(svc.Spec.Selector) == 0 {
						continue
					}
					selects := true
					for k, v := range svc.Spec.Selector {
						s, ok := v.(string)
						selects = selects && ok && d.Spec.Template.Metadata.Labels[k] == s
					}
					if !selects {
						continue
					}
					for _, sp := range svc.Spec.Ports {
						target := sp.Port
						if sp.TargetPort != nil {
							target = portOf(t, c, sp.TargetPort)
						}
						if _, ok := served[target]; !ok {
							t.Errorf("%s: Service %s port %s targets %d, which nothing in the pod serves", file, svc.Metadata.Name, sp.Name, target)
						}
						delete(legacy, target)
					}
				}
				for p := range legacy {
					t.Errorf("%s: legacy port %d is redirected to nexmux but no Service port reaches it", where, p)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no nexmux container in the manifests")
	}
}

// unitSettings reads a systemd unit's assignments, every value of each key
// in order.
func unitSettings(t *testing.T, name string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(deployFile(t, name), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// nexmux.service stops nexmux the way it drains (SIGTERM, with time for
// the drain and a shutdown delay of a few seconds), reloads it with
// SIGHUP, and its sandbox leaves what serve needs: binding 443, and the
// socket families it opens (listed below with their use).
func TestSystemdUnitStopsReloadsAndSandboxesAsNexmuxNeeds(t *testing.T) {
	u := unitSettings(t, "systemd/nexmux.service")
	last := func(k string) string {
		if v := u[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	if s := last("KillSignal"); s != "" && s != "SIGTERM" && s != "SIGINT" {
		t.Errorf("KillSignal=%s: nexmux drains on SIGTERM or SIGINT", s)
	}
	v := last("TimeoutStopSec")
	if _, err := strconv.Atoi(v); err == nil {
		v += "s" // systemd reads a bare number as seconds
	}
	stop, err := time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(v, "min", "m"), " ", ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v (systemd's default, 90s, is a distribution setting: name it)", last("TimeoutStopSec"), err)
	}
	// The README's advice behind a balancer: a shutdown delay of a few seconds.
	if need := daemon.DefaultDrainTimeout + 5*time.Second + daemon.CutGrace; stop <= need {
		t.Errorf("TimeoutStopSec=%v: systemd would SIGKILL nexmux before --drain-timeout, a 5 s --shutdown-delay and the cut requests' wait (%v) are over", stop, need)
	}
	if r := last("ExecReload"); !regexp.MustCompile(`^/(usr/)?bin/kill -(HUP|s HUP|SIGHUP) \$MAINPID$`).MatchString(r) {
		t.Errorf("ExecReload=%s: want SIGHUP to $MAINPID", r)
	}
	if !slices.Contains(strings.Fields(last("AmbientCapabilities")), "CAP_NET_BIND_SERVICE") {
		t.Error("AmbientCapabilities lacks CAP_NET_BIND_SERVICE: nexmux could not bind 443")
	}
	if b, ok := u["CapabilityBoundingSet"]; ok && !slices.Contains(strings.Fields(b[len(b)-1]), "CAP_NET_BIND_SERVICE") {
		t.Error("CapabilityBoundingSet lacks CAP_NET_BIND_SERVICE")
	}
	if fams, ok := u["RestrictAddressFamilies"]; ok {
		allowed := strings.Fields(fams[len(fams)-1])
		for _, f := range []struct{ family, use string }{
			{"AF_INET", "IPv4 listeners and Nexus"}, {"AF_INET6", "IPv6 listeners and Nexus"},
			{"AF_UNIX", "the SOCKS5 ingress's socket pairs"},
			// Without it the host's addresses read as loopback alone: a
			// backend at this host's address and nexmux's port loops.
			{"AF_NETLINK", "net.InterfaceAddrs, for a backend on nexmux's own listener"},
		} {
			if !slices.Contains(allowed, f.family) {
				t.Errorf("RestrictAddressFamilies=%s lacks %s (%s)", fams[len(fams)-1], f.family, f.use)
			}
		}
	}
	iu := unitSettings(t, "systemd/nexmux-iptables.service")
	if !slices.Contains(strings.Fields(strings.Join(iu["Before"], " ")), "nexmux.service") {
		t.Error("nexmux-iptables.service is not ordered Before=nexmux.service: on stop, systemd would remove the redirects while nexmux still drains the connections they bring")
	}
	if len(iu["ExecStop"]) == 0 || !strings.Contains(iu["ExecStop"][0], "--delete") || iu["RemainAfterExit"] == nil {
		t.Error("nexmux-iptables.service: want a oneshot that stays active (RemainAfterExit) and deletes its rules on stop (ExecStop ... --delete)")
	}
	// A --port edit is applied by a reload that replaces the rules in
	// place: never a delete first, which would leave a window without NAT.
	if len(iu["ExecReload"]) == 0 || len(iu["ExecStart"]) == 0 || iu["ExecReload"][0] != iu["ExecStart"][0] {
		t.Errorf("nexmux-iptables.service: ExecReload %q, want ExecStart's %q (apply again, no delete)", iu["ExecReload"], iu["ExecStart"])
	}
}

// nexusUID is the user the sonatype/nexus3 image runs Nexus as; its
// /nexus-data must be writable by it.
const nexusUID = 200

// A persistent volume is created owned by root: the Nexus beside nexmux,
// running as uid 200, could not write its /nexus-data on it and would not
// start. The pod's fsGroup gives the volume to Nexus's group.
func TestManifestNexusCanWriteItsData(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			claims := map[string]bool{}
			for _, c := range d.Spec.VolumeClaimTemplates {
				claims[c.Metadata.Name] = true
			}
			for _, c := range pod.Containers {
				if !strings.HasPrefix(c.Image, "sonatype/nexus3") {
					continue
				}
				for _, m := range c.VolumeMounts {
					if !claims[m.Name] {
						continue
					}
					checked++
					if g := pod.SecurityContext.FSGroup; g == nil || *g != nexusUID {
						t.Errorf("%s %s: container %s writes %s on a persistent volume, but the pod's securityContext.fsGroup is %v, not %d (Nexus's group): a new volume belongs to root", file, d.Metadata.Name, c.Name, m.MountPath, g, nexusUID)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Nexus container with a persistent volume in the manifests")
	}
}

// Every nexmux container in the manifests and the README's examples runs
// sandboxed (non-root, no privilege escalation, read-only root, no
// capabilities, the runtime's seccomp filter) and asks for CPU and memory,
// so that the pod is not BestEffort, first evicted under memory pressure.
// It sets no memory limit: nexmux bounds its own memory by its connection
// and transfer limits, and a lower limit would make a flood an OOM kill.
func TestManifestNexmuxSandboxedWithRequests(t *testing.T) {
	checked := 0
	for _, n := range nexmuxContainers(t) {
		pod, c, where := n.pod, n.c, n.where
		checked++
		sc := c.SecurityContext
		if sc == nil {
			sc = &k8sSecurityContext{}
		}
		isTrue := func(p *bool) bool { return p != nil && *p }
		if !isTrue(sc.RunAsNonRoot) && !isTrue(pod.SecurityContext.RunAsNonRoot) {
			t.Errorf("%s: runAsNonRoot is not set", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", where)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("%s: readOnlyRootFilesystem is not true", where)
		}
		if !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: capabilities do not drop ALL: %v", where, sc.Capabilities.Drop)
		}
		seccomp := pod.SecurityContext.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != "RuntimeDefault" {
			t.Errorf("%s: seccompProfile is %v, want RuntimeDefault", where, seccomp)
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
			t.Errorf("%s: resources.requests %v lack cpu or memory", where, c.Resources.Requests)
		}
		if m, ok := c.Resources.Limits["memory"]; ok {
			t.Errorf("%s: memory limit %s: nexmux bounds its own memory, and a flood would be an OOM kill", where, m)
		}
	}
	if checked < 2 {
		t.Fatalf("checked %d nexmux containers, want the manifest's and the README's", checked)
	}
}

// nexmux warns at every start and reload about a secret file every user
// may read (smallfile.OthersMayRead), and a Secret volume's files are 0644
// unless told: so a Secret that holds one is mounted without o+r, group
// readable under the pod's fsGroup (its files belong to root otherwise,
// and nexmux does not run as root).
func TestManifestSecretFilesReadableByNexmuxAlone(t *testing.T) {
	checked := 0
	for _, n := range nexmuxContainers(t) {
		pod, c := n.pod, n.c
		cfg := servedConfig(t, n.docs, pod, c)
		for flag, path := range map[string]string{
			"affinity-secret-file": cfg.AffinitySecretFile,
			"mirror-auth-file":     cfg.MirrorAuthFile,
			"socks5-auth-file":     cfg.Socks5AuthFile,
		} {
			if path == "" {
				continue
			}
			where := fmt.Sprintf("%s: %s %s", n.where, flag, path)
			for _, m := range c.VolumeMounts {
				if filepath.Dir(path) != filepath.Clean(m.MountPath) {
					continue
				}
				for _, v := range pod.Volumes {
					if v.Name != m.Name || v.Secret == nil {
						continue
					}
					checked++
					mode := 0o644 // Kubernetes' default
					if v.Secret.DefaultMode != nil {
						mode = *v.Secret.DefaultMode
					}
					switch {
					case mode&0o004 != 0:
						t.Errorf("%s: Secret %s mounted with mode %#o: nexmux warns that every user may read it", where, v.Secret.SecretName, mode)
					case pod.SecurityContext.FSGroup == nil:
						t.Errorf("%s: no fsGroup: the Secret's files belong to root, unreadable to nexmux at %#o", where, mode)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no secret file of nexmux's in a Secret volume: the README's HA example has one")
	}
}

// nexmuxContainer is a nexmux container of the manifests or the README's
// examples, with its pod and the documents of its file.
type nexmuxContainer struct {
	where string // file, object and container, for messages
	docs  []k8sDoc
	pod   k8sPod
	c     k8sContainer
}

func nexmuxContainers(t *testing.T) []nexmuxContainer {
	var out []nexmuxContainer
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			for _, c := range pod.Containers {
				if strings.HasPrefix(c.Image, "nexmux:") {
					out = append(out, nexmuxContainer{fmt.Sprintf("%s %s container %s", file, d.Metadata.Name, c.Name), docs, pod, c})
				}
			}
		}
	}
	return out
}

// The manifests run images built from deploy/Dockerfile (nexmux,
// nexmux-iptables) under a tag of :latest, for which Kubernetes' default
// pull policy is Always: the kubelet then pulls docker.io/library/nexmux
// even where the image was loaded onto the node (kind load, ctr import),
// and the pod never starts (ErrImagePull). A pod that names such an image
// says IfNotPresent (or Never).
func TestManifestLocalImagesAreNotAlwaysPulled(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			pod := d.Spec.Template.Spec
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				name, tag, _ := strings.Cut(c.Image, ":")
				if name != "nexmux" && name != "nexmux-iptables" {
					continue
				}
				checked++
				if (tag == "" || tag == "latest") && c.ImagePullPolicy != "IfNotPresent" && c.ImagePullPolicy != "Never" {
					t.Errorf("%s %s container %s: image %s with imagePullPolicy %q: Kubernetes always pulls a :latest image, from Docker Hub for this name", file, d.Metadata.Name, c.Name, c.Image, c.ImagePullPolicy)
				}
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked %d containers, want the manifest's two and the README's", checked)
	}
}

// The build context has no .git, so an image names its revision only
// when the build passes it: every docker build the Dockerfile shows, the
// init container's included, passes REVISION and REVISION_TIME, or that
// image's nexmux version says "unknown".
func TestDockerfileBuildCommandsPassTheRevision(t *testing.T) {
	text := strings.ReplaceAll(deployFile(t, "Dockerfile"), "\\\n#", "")
	n := 0
	for _, line := range strings.Split(text, "\n") {
		cmd, ok := strings.CutPrefix(line, "# docker build ")
		if !ok {
			continue
		}
		n++
		for _, arg := range []string{"--build-arg REVISION=", "--build-arg REVISION_TIME="} {
			if !strings.Contains(cmd, arg) {
				t.Errorf("Dockerfile: docker build %s: no %s", strings.Join(strings.Fields(cmd), " "), arg)
			}
		}
	}
	if n < 2 {
		t.Fatalf("found %d docker build commands in the Dockerfile's comments, want the nexmux and the iptables image's", n)
	}
}

// The iptables init container is the pod's one container with a network
// capability, and runs as root: it gets NET_ADMIN (and NET_RAW, for
// iptables-legacy) and nothing else, cannot gain more through a setuid
// file, and writes nothing to its image (iptables-nft takes no lock file;
// built from deploy/Dockerfile it ran so under docker, read-only and
// no-new-privileges).
func TestManifestIptablesInitContainerSandboxed(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			for _, c := range d.Spec.Template.Spec.InitContainers {
				if !strings.HasPrefix(c.Image, "nexmux-iptables") {
					continue
				}
				checked++
				where := fmt.Sprintf("%s %s init container %s", file, d.Metadata.Name, c.Name)
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s: no securityContext", where)
					continue
				}
				if !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s: capabilities do not drop ALL: %v", where, sc.Capabilities.Drop)
				}
				for _, a := range sc.Capabilities.Add {
					if a != "NET_ADMIN" && a != "NET_RAW" {
						t.Errorf("%s: adds capability %s: the REDIRECT rules need NET_ADMIN (NET_RAW for iptables-legacy) alone", where, a)
					}
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: allowPrivilegeEscalation is not false", where)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: readOnlyRootFilesystem is not true", where)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no nexmux-iptables init container in the manifests")
	}
}

// A StatefulSet's serviceName is the headless Service that gives its pods
// their stable DNS names (nexus-0.<serviceName>), which an HA nexmux lists
// as its upstreams: it must exist beside it, headless, select the
// StatefulSet's pods, and publish them before they are ready. Each pod's
// readiness is its nexmux's /readyz, which needs a Nexus it can resolve:
// names published only once ready would never be published at all.
func TestManifestStatefulSetHasItsHeadlessService(t *testing.T) {
	checked := 0
	for file, docs := range manifests(t) {
		for _, d := range docs {
			if d.Kind != "StatefulSet" {
				continue
			}
			checked++
			where := fmt.Sprintf("%s StatefulSet %s", file, d.Metadata.Name)
			if d.Spec.ServiceName == "" {
				t.Errorf("%s: no serviceName", where)
				continue
			}
			i := slices.IndexFunc(docs, func(s k8sDoc) bool { return s.Kind == "Service" && s.Metadata.Name == d.Spec.ServiceName })
			if i < 0 {
				t.Errorf("%s: serviceName %q names no Service of the file", where, d.Spec.ServiceName)
				continue
			}
			svc := docs[i].Spec
			if svc.ClusterIP != "None" {
				t.Errorf("%s: Service %s has clusterIP %q, want None (headless)", where, d.Spec.ServiceName, svc.ClusterIP)
			}
			if !svc.PublishNotReadyAddresses {
				t.Errorf("%s: Service %s does not publish pods that are not ready", where, d.Spec.ServiceName)
			}
			selects := len(svc.Selector) > 0
			for k, v := range svc.Selector {
				s, ok := v.(string)
				selects = selects && ok && d.Spec.Template.Metadata.Labels[k] == s
			}
			if !selects {
				t.Errorf("%s: Service %s selector %v does not select its pods (labels %v)", where, d.Spec.ServiceName, svc.Selector, d.Spec.Template.Metadata.Labels)
			}
			if len(svc.Ports) == 0 {
				t.Errorf("%s: Service %s has no port", where, d.Spec.ServiceName)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no StatefulSet in the manifests")
	}
}
