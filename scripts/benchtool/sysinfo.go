package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// rssOf returns the resident set size of pid in bytes; with tree, plus that
// of its direct children (nginx's workers under the master).
func rssOf(pid int, tree bool) (int64, error) {
	total, err := vmRSS(pid)
	if err != nil {
		return 0, err
	}
	if !tree {
		return total, nil
	}
	for _, child := range children(pid) {
		if v, err := vmRSS(child); err == nil {
			total += v
		}
	}
	return total, nil
}

func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// cpuTime returns the user+system CPU time pid has used (with tree, plus
// its direct children's).
func cpuTime(pid int, tree bool) time.Duration {
	if pid <= 0 {
		return 0
	}
	total := procCPU(pid)
	if tree {
		for _, c := range children(pid) {
			total += procCPU(c)
		}
	}
	return total
}

// systemCPU returns the machine's busy and idle CPU time so far (all cores).
func systemCPU() (busy, idle time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	busy, idle, _ = parseProcStat(string(data))
	return busy, idle
}

// clockTick is USER_HZ, 100 on every Linux that matters here.
const clockTick = 100

func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	// after ")": state(0) ppid(1) ... utime(11) stime(12)
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTick
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parens.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			c, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, c)
		}
	}
	return out
}

// scrapeMetrics reads the unlabelled samples of a Prometheus text page.
func scrapeMetrics(url string) map[string]float64 {
	out := map[string]float64{}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// machine describes this machine for the report.
func machine(nginxVersion string) Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), Nginx: nginxVersion}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = "Linux " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return m
}

// routesMain writes a nexmux --config file with n routes
// (fmt.Sprintf(hostfmt, i) = repo) besides the settings given as flags.
func routesMain(args []string) error {
	fs := flag.NewFlagSet("routes", flag.ExitOnError)
	n := fs.Int("n", 10000, "number of routes")
	hostfmt := fs.String("hostfmt", "r%05d.bench.test", "host name `FORMAT` of route i")
	repo := fs.String("repo", "bench", "repository every route maps to")
	out := fs.String("out", "", "output `FILE` (default standard output)")
	var settings []string
	fs.Func("set", "`KEY=VALUE` setting for the file (repeatable; list values comma-separated)", func(s string) error {
		if !strings.Contains(s, "=") {
			return errors.New("want KEY=VALUE")
		}
		settings = append(settings, s)
		return nil
	})
	_ = fs.Parse(args)
	var b bytes.Buffer
	b.WriteString("# Generated by scripts/benchtool routes for `make bench`.\n")
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		if strings.Contains(v, ",") {
			fmt.Fprintf(&b, "%s:\n", k)
			for item := range strings.SplitSeq(v, ",") {
				fmt.Fprintf(&b, "  - %s\n", strconv.Quote(item))
			}
		} else {
			fmt.Fprintf(&b, "%s: %s\n", k, strconv.Quote(v))
		}
	}
	b.WriteString("route:\n")
	for i := range *n {
		fmt.Fprintf(&b, "  - %s=%s\n", fmt.Sprintf(*hostfmt, i), *repo)
	}
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err := w.Write(b.Bytes())
	return err
}

// othersCPU sums the CPU time (utime + stime + cutime + cstime) of every
// process but ours, the children of ours (nginx's workers, the bench's wrk
// or ab) and the kernel's threads. Between two marks its difference is the
// work other sessions did meanwhile: a process that exits in between
// leaves its part in its parent's cutime once reaped, so the sum stays
// continuous. Per-process times leave out the softirq work the kernel
// accounts to no one, so the loopback traffic of the bench stays in the
// machine's figure.
func othersCPU(ours map[int]bool, _ bool) time.Duration {
	var total int64
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, ticks, ok := parsePIDStat(data)
		if !ok || ours[pid] || ours[ppid] || ppid == 2 || pid == 2 {
			continue
		}
		total += ticks
	}
	return time.Duration(total) * time.Second / clockTick
}

// parsePIDStat reads a /proc/PID/stat line: the parent's pid and the
// process's utime + stime + cutime + cstime in clock ticks.
func parsePIDStat(data []byte) (ppid int, ticks int64, ok bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	// after ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return ppid, ticks, true
}
