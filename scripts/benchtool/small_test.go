package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// A /proc/stat as this bench machine's kernel (6.18) writes it.
const procStatSample = `cpu  695396 0 176496 2426273 4859 0 16041 4940 0 0
cpu0 344504 0 86599 1219435 1052 0 7700 2409 0 0
cpu1 350892 0 89896 1206838 3806 0 8340 2531 0 0
intr 123456 0 0
ctxt 987654
`

func TestParseProcStat(t *testing.T) {
	busy, idle, err := parseProcStat(procStatSample)
	if err != nil {
		t.Fatal(err)
	}
	// user nice system irq softirq steal; idle + iowait
	if want := time.Duration(695396+0+176496+0+16041+4940) * 10 * time.Millisecond; busy != want {
		t.Errorf("busy = %v, want %v", busy, want)
	}
	if want := time.Duration(2426273+4859) * 10 * time.Millisecond; idle != want {
		t.Errorf("idle = %v, want %v", idle, want)
	}
	// A delta between two samples is what a window measures.
	later := strings.Replace(procStatSample, "cpu  695396 0 176496 2426273 4859", "cpu  695496 0 176546 2426283 4869", 1)
	b2, i2, err := parseProcStat(later)
	if err != nil {
		t.Fatal(err)
	}
	if b2-busy != 1500*time.Millisecond || i2-idle != 200*time.Millisecond {
		t.Errorf("delta busy %v idle %v, want 1.5s and 200ms", b2-busy, i2-idle)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5\n", "cpu  1 2 x 4 5 6 7 8\n", "cpu 1 2\n"} {
		if _, _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	// The live file parses too.
	if b, _ := systemCPU(); b <= 0 {
		t.Errorf("systemCPU busy = %v", b)
	}
}

func TestParseAb(t *testing.T) {
	res, err := parseAb(abSample)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 15739 || res.Seconds != 1.000 || res.Errors != 0 || res.P50us != 0 {
		t.Errorf("ab: %+v", res)
	}
	// Non-2xx answers are errors, not served requests: here all of them.
	if res, err := parseAb(abErrorsSample); err == nil || res.Errors != 13789 || res.Requests != 0 {
		t.Errorf("ab with errors: %+v, %v", res, err)
	}
	if _, err := parseAb("This is ApacheBench, Version 2.3\nBenchmarking 127.0.0.1 (be patient)...apr_socket_recv: Connection refused (111)\n"); err == nil {
		t.Error("ab with no report: no error")
	}
}

// ab's -e file gives its percentiles to the microsecond; its report has
// whole milliseconds only, useless for latencies under one.
func TestParseAbPercentiles(t *testing.T) {
	var b strings.Builder
	b.WriteString("Percentage served,Time in ms\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "%d,%.3f\n", i, 0.100+float64(i)*0.002)
	}
	p50, p99, err := parseAbPercentiles(b.String())
	if err != nil || math.Abs(p50-200) > 0.01 || math.Abs(p99-298) > 0.01 {
		t.Fatalf("p50 %v µs, p99 %v µs, %v; want 200 and 298", p50, p99, err)
	}
	for _, bad := range []string{"", "Percentage served,Time in ms\n", "Percentage served,Time in ms\n50,x\n99,1\n"} {
		if _, _, err := parseAbPercentiles(bad); err == nil {
			t.Errorf("parseAbPercentiles(%q): no error", bad)
		}
	}
}

func TestParseWrk(t *testing.T) {
	res, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != wrkWantRequests || math.Abs(res.Seconds-wrkWantSeconds) > 1e-9 || res.Errors != 0 ||
		math.Abs(res.P50us-wrkWantP50) > 1e-6 || math.Abs(res.P99us-wrkWantP99) > 1e-6 {
		t.Errorf("wrk: %+v", res)
	}
	// Every answer an error page: counted as errors, none served.
	if res, err := parseWrk(wrkErrorsSample); err == nil || res.Errors != wrkErrorsWant || res.Requests != 0 {
		t.Errorf("wrk with errors: %+v, %v; want %d errors", res, err, wrkErrorsWant)
	}
	// wrk 4.1.0 and HEAD: it waits for a body that never comes.
	if _, err := parseWrk(wrkHeadSample); err == nil || !strings.Contains(err.Error(), "0 requests") {
		t.Errorf("wrk HEAD sample: err = %v", err)
	}
	for _, c := range []struct {
		v, unit string
		us      float64
	}{{"945.12", "us", 945.12}, {"1.25", "ms", 1250}, {"2.00", "s", 2e6}, {"1", "m", 60e6}} {
		if got := durUs(c.v, c.unit); math.Abs(got-c.us) > 1e-6 {
			t.Errorf("durUs(%s%s) = %v, want %v", c.v, c.unit, got, c.us)
		}
	}
}

// With two cells measured the tables show the spread, the judged whole
// machine CPU and the targets with by how much they were missed.
func TestSmallReport(t *testing.T) {
	res := sampleResults()
	res.Targets = append(res.Targets, colFloor)
	res.Settings.SmallGenerators, res.Settings.SmallConns = []string{genGo, genWrk}, []int{32}
	res.Settings.SmallRounds, res.Settings.SmallSeconds = 3, 2
	cell := func(gen, method, target string, rates []float64, mach float64) SmallCell {
		return SmallCell{Generator: gen, Method: method, Conns: 32, Target: target, Rate: newSeries(rates, 0), MachineUs: mach, ProxyUs: mach / 2, P50us: 900, P99us: 2000}
	}
	res.Small = []SmallCell{
		cell(genGo, "HEAD", colNexmux, []float64{9000, 10000, 11000}, 120),
		cell(genGo, "HEAD", colFloor, []float64{12000, 12500, 13000}, 100),
		cell(genGo, "HEAD", colTuned, []float64{20000, 21000, 22000}, 80),
		cell(genWrk, "GET", colNexmux, []float64{18000, 18500, 19000}, 97),
		cell(genWrk, "GET", colFloor, []float64{18500, 19000, 19500}, 95),
		cell(genWrk, "GET", colTuned, []float64{17000, 17200, 17400}, 113),
	}
	st := smallTable(res, false)
	for _, want := range []string{
		"| benchtool (Go), HEAD, 32 conns | req/s (rounds' min–max) |",
		"10,000 (9,000–11,000)",
		"| wrk, GET, 32 conns | **whole machine** µs CPU/req |",
		"**97.0**",
	} {
		if !strings.Contains(st, want) {
			t.Errorf("small table lacks %q:\n%s", want, st)
		}
	}
	sg := smallGoalsTable(res)
	for _, want := range []string{
		"| target (32 keep-alive conns) | benchtool (Go) HEAD | wrk GET |",
		"| whole-machine CPU per request ≤ nginx tuned's (nexmux ÷ nginx tuned) | 1.50× **missed** (50% over) | 0.86× **met** |",
		"| req/s ≥ 1.0× nginx tuned | 0.48× **missed** (52% short) | 1.08× **met** |",
		"Go floor ÷ nexmux ≥ 0.95 | 0.83× **missed** (12% short) | 0.98× **met** |",
		"| nexmux's own work: req/s ≥ 0.95× Go floor | 0.80× **missed** (16% short) | 0.97× **met** |",
	} {
		if !strings.Contains(sg, want) {
			t.Errorf("small goals lack %q:\n%s", want, sg)
		}
	}
	// The keep-alive goal of the old table gives way to the matrix's.
	for _, g := range goals(res) {
		if g.Key == "rate-nginx" {
			t.Error("rate-nginx goal judged beside the matrix")
		}
	}
	sec := readmeSection(res, table(res), goalsTable(res), "x.png", "", "**nexmux's internals** (lead: update)")
	for _, want := range []string{"### Small requests", "whole-machine CPU per request ≤ nginx tuned's", "**nexmux's internals** (lead: update)"} {
		if !strings.Contains(sec, want) {
			t.Errorf("README section lacks %q", want)
		}
	}
}

// The spread table marks a previous median beyond this run's range.
func TestSpreadTable(t *testing.T) {
	res := sampleResults()
	prev := sampleResults()
	res.Handshake[colNexmux] = newSeries([]float64{900, 1000, 1100}, 0)
	res.Handshake[colTuned] = newSeries([]float64{1000, 1050, 1100}, 0)
	prev.Handshake[colNexmux] = newSeries([]float64{1200}, 0)
	prev.Handshake[colTuned] = newSeries([]float64{1040}, 0)
	res.Previous = previousOf(prev)
	res.PreviousStarted = time.Date(2026, 11, 28, 15, 27, 0, 0, time.UTC)
	sp := spreadTable(res)
	for _, want := range []string{
		"| previous run (2026-11-28) | vs previous |",
		"| full TLS handshakes | nexmux | 1,000 /s | 900–1,100 | ±10% | 1,200 | 0.83× (**below the previous run beyond the spread**) |",
		"| full TLS handshakes | nginx, tuned | 1,050 /s | 1,000–1,100 | ±5% | 1,040 | 1.01× (within the spread) |",
	} {
		if !strings.Contains(sp, want) {
			t.Errorf("spread table lacks %q:\n%s", want, sp)
		}
	}
}

// The relative column sets each rate against TLS direct's of the same run:
// a machine that is slower in this run as a whole is no regression, a
// proxy that lost against the same machine is, and the route rows take
// TLS direct's keep-alive rate.
func TestSpreadTableRelativeToDirect(t *testing.T) {
	res := sampleResults()
	prev := sampleResults()
	// The whole machine 20% slower: TLS direct and nexmux alike.
	prev.Pull[colDirect] = newSeries([]float64{1000}, 0)
	prev.Pull[colNexmux] = newSeries([]float64{1000}, 0)
	res.Pull[colDirect] = newSeries([]float64{780, 800, 820}, 0)
	res.Pull[colNexmux] = newSeries([]float64{760, 800, 840}, 0)
	// The machine as fast as before, nexmux a quarter slower.
	prev.Handshake[colDirect] = newSeries([]float64{1000}, 0)
	prev.Handshake[colNexmux] = newSeries([]float64{1000}, 0)
	res.Handshake[colDirect] = newSeries([]float64{990, 1000, 1010}, 0)
	res.Handshake[colNexmux] = newSeries([]float64{700, 750, 800}, 0)
	// nexmux 10% faster against a machine 10% faster: unchanged.
	prev.Rate[colDirect] = newSeries([]float64{40000}, 0)
	prev.Routes.RateOne = newSeries([]float64{10000}, 0)
	res.Rate[colDirect] = newSeries([]float64{43000, 44000, 45000}, 0)
	res.Routes.RateOne = newSeries([]float64{10500, 11000, 11500}, 0)
	res.Previous = previousOf(prev)
	sp := spreadTable(res)
	for _, want := range []string{
		"| vs previous | vs previous, relative to TLS direct (no proxy) |",
		"| blob pull, 1 GiB | nexmux | 800 MiB/s | 760–840 | ±5% | 1,000 | 0.80× (**below the previous run beyond the spread**) | 1.00× (within the spread, ±8%) |",
		"| blob pull, 1 GiB | TLS direct (no proxy) | 800 MiB/s | 780–820 | ±2% | 1,000 | 0.80× (**below the previous run beyond the spread**) | — |",
		"| full TLS handshakes | nexmux | 750 /s | 700–800 | ±7% | 1,000 | 0.75× (**below the previous run beyond the spread**) | 0.75× (**below the previous run beyond the spread**, ±8%) |",
		"| HEAD manifest, 1 route | nexmux | 11,000 req/s | 10,500–11,500 | ±5% | 10,000 | 1.10× (above the previous run beyond the spread) | 1.00× (within the spread, ±7%) |",
	} {
		if !strings.Contains(sp, want) {
			t.Errorf("spread table lacks %q:\n%s", want, sp)
		}
	}
}

func TestInternalsParagraph(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/small-requests.md"
	if err := os.WriteFile(p, []byte("# x\n\n"+internalsBegin+"\nWhat costs.\n"+internalsEnd+"\nrest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := internalsParagraph(p); got != "What costs." {
		t.Errorf("got %q", got)
	}
	if got := internalsParagraph(dir + "/none.md"); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

// Real reports, taken on the bench machine against benchtool backend's
// TLS listener (wrk 4.1.0 and ab 2.3 from Debian 12).
var (
	wrkSample = `Running 1s test @ https://127.0.0.1:29402/repository/bench/v2/bench/app/manifests/latest
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   506.33us  655.61us   8.62ms   92.18%
    Req/Sec     5.13k     1.65k    7.92k    60.00%
  Latency Distribution
     50%  307.00us
     75%  584.00us
     90%    1.02ms
     99%    3.57ms
  10199 requests in 1.00s, 9.06MB read
Requests/sec:  10177.55
Transfer/sec:      9.04MB
`
	wrkErrorsSample = `Running 1s test @ https://127.0.0.1:29402/nothing/here
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   618.06us    0.88ms   8.68ms   88.17%
    Req/Sec     5.22k     1.28k   10.13k    95.24%
  Latency Distribution
     50%  239.00us
     75%  675.00us
     90%    1.70ms
     99%    4.26ms
  10932 requests in 1.10s, 2.65MB read
  Non-2xx or 3xx responses: 10932
Requests/sec:   9902.63
Transfer/sec:      2.40MB
`
	wrkHeadSample = `Running 1s test @ https://127.0.0.1:29402/repository/bench/v2/bench/app/manifests/latest
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 1.56KB read
Requests/sec:      0.00
Transfer/sec:      1.56KB
`
	abSample = `This is ApacheBench, Version 2.3 <$Revision$>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        
Server Hostname:        127.0.0.1
Server Port:            29402
SSL/TLS Protocol:       TLSv1.3,TLS_AES_128_GCM_SHA256,256,128
Server Temp Key:        X25519 253 bits
TLS Server Name:        registry.bench.test

Document Path:          /repository/bench/v2/bench/app/manifests/latest
Document Length:        0 bytes

Concurrency Level:      4
Time taken for tests:   1.000 seconds
Complete requests:      15739
Failed requests:        0
Keep-Alive requests:    15739
Total transferred:      6673336 bytes
HTML transferred:       0 bytes
Requests per second:    15738.35 [#/sec] (mean)
Time per request:       0.254 [ms] (mean)
Time per request:       0.064 [ms] (mean, across all concurrent requests)
Transfer rate:          6516.66 [Kbytes/sec] received

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.1      0       8
Processing:     0    0   0.7      0      44
Waiting:        0    0   0.7      0      44
Total:          0    0   0.8      0      52

Percentage of the requests served within a certain time (ms)
  50%      0
  66%      0
  75%      0
  80%      0
  90%      0
  95%      0
  98%      1
  99%      1
 100%     52 (longest request)
`
	abErrorsSample = `This is ApacheBench, Version 2.3 <$Revision$>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        
Server Hostname:        127.0.0.1
Server Port:            29402
SSL/TLS Protocol:       TLSv1.3,TLS_AES_128_GCM_SHA256,256,128
Server Temp Key:        X25519 253 bits
TLS Server Name:        registry.bench.test

Document Path:          /nothing/here
Document Length:        19 bytes

Concurrency Level:      4
Time taken for tests:   1.000 seconds
Complete requests:      13789
Failed requests:        0
Non-2xx responses:      13789
Keep-Alive requests:    13789
Total transferred:      3833342 bytes
HTML transferred:       261991 bytes
Requests per second:    13787.46 [#/sec] (mean)
Time per request:       0.290 [ms] (mean)
Time per request:       0.073 [ms] (mean, across all concurrent requests)
Transfer rate:          3743.08 [Kbytes/sec] received

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.1      0       6
Processing:     0    0   0.8      0      44
Waiting:        0    0   0.8      0      44
Total:          0    0   0.8      0      48

Percentage of the requests served within a certain time (ms)
  50%      0
  66%      0
  75%      0
  80%      0
  90%      0
  95%      0
  98%      1
  99%      1
 100%     48 (longest request)
`
)

const (
	wrkWantRequests = 10199
	wrkWantSeconds  = 1.00
	wrkWantP50      = 307
	wrkWantP99      = 3570
	wrkErrorsWant   = 10932
)

func TestParsePIDStat(t *testing.T) {
	// comm with a space and a parenthesis, as /proc allows
	line := []byte("4242 (nginx: (worker) x) S 4200 4200 4200 0 -1 4194624 900 0 0 0 150 50 7 3 20 0 1 0 100 2000000 500 18446744073709551615")
	ppid, ticks, ok := parsePIDStat(line)
	if !ok || ppid != 4200 || ticks != 150+50+7+3 {
		t.Errorf("parsePIDStat = %d %d %v, want 4200 210 true", ppid, ticks, ok)
	}
	if _, _, ok := parsePIDStat([]byte("garbage")); ok {
		t.Error("garbage parsed")
	}
	// Other processes' time: this process and its children are left out,
	// so burning CPU here leaves the sum (nearly) where it was while the
	// machine's busy time grows.
	ours := map[int]bool{os.Getpid(): true}
	o0 := othersCPU(ours, false)
	b0, _ := systemCPU()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	o1 := othersCPU(ours, false)
	b1, _ := systemCPU()
	if b1-b0 < 150*time.Millisecond {
		t.Skipf("busy grew by only %v (clock ticks on this machine?)", b1-b0)
	}
	if o1 < o0 {
		t.Errorf("others' CPU went backwards: %v -> %v", o0, o1)
	}
}
