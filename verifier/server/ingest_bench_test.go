package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/loadgen"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// BenchmarkIngestStream is report ingest through the whole stream: an
// in-process verifier on SQLite, and clearance-loadgen's agents (each its
// own key, certificate and mTLS connection on loopback) in a child process
// (this test binary again, running TestIngestLoadgenProcess), which hold
// Connect streams and then send signed reports back to back for the ingest
// phase. Each iteration is one whole run; run it with -benchtime=1x.
//
// The agents are in another process so that this one is the verifier
// alone: what it holds per connected agent (heap after a GC, goroutine
// stacks, goroutines; all growth from before the agents, divided by them),
// the CPU time it spends per report, and its profiles. With CLEARANCE_PROFILE_DIR set (make profile-ingest),
// heap.pprof and goroutine.pprof are written once every agent is connected,
// and cpu.pprof covers the ingest phase alone. CLEARANCE_PROFILE_AGENTS
// (default 1000) and CLEARANCE_PROFILE_SECONDS (default 10) size the run.
func BenchmarkIngestStream(b *testing.B) {
	agents := envInt(b, "CLEARANCE_PROFILE_AGENTS", 1000)
	seconds := envInt(b, "CLEARANCE_PROFILE_SECONDS", 10)
	dir := os.Getenv("CLEARANCE_PROFILE_DIR")
	target, commits := startIngestBench(b)
	for range b.N {
		base := memNow()
		lg := startLoadgenProcess(b, loadgenJob{Target: *target, Agents: agents, Seconds: seconds})

		// 1. Every agent connected: what holding them costs.
		lg.await(b, "connected")
		held := memNow()
		if dir != "" {
			writeProfile(b, dir, "heap")
			writeProfile(b, dir, "goroutine")
			// What was allocated so far: the ingest phase's
			// allocations are allocs.pprof less this (pprof -base).
			writeProfileAs(b, dir, "allocs", "allocs-connected")
		}

		// 2. The ingest phase, with the CPU profile.
		stopCPU := func() {}
		if dir != "" {
			f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
		cpu0, commits0 := cpuTime(), commits()
		lg.next(b)
		var res loadgenResult
		if err := json.Unmarshal([]byte(lg.await(b, "result")), &res); err != nil {
			b.Fatal(err)
		}
		cpu, batches := cpuTime()-cpu0, commits()-commits0
		stopCPU()
		if dir != "" {
			writeProfile(b, dir, "allocs")
		}
		lg.wait(b)
		if res.Err != "" {
			b.Fatal(res.Err)
		}
		if res.Failed > 0 || res.Count == 0 {
			b.Fatalf("%d of %d agents failed to start, %d reports acked; errors %v", res.Failed, agents, res.Count, res.Errors)
		}
		per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / 1024 / float64(agents) }
		b.ReportMetric(res.Rate, "reports/s")
		b.ReportMetric(res.P50, "p50-ms")
		b.ReportMetric(res.P99, "p99-ms")
		// CPU time per report depends less than reports/s on what else
		// the machine runs.
		b.ReportMetric(float64(cpu.Microseconds())/float64(res.Count), "cpu-us/report")
		// How many reports each commit of the group commit carried.
		b.ReportMetric(float64(res.Count)/float64(max(batches, 1)), "reports/commit")
		b.ReportMetric(float64(agents), "agents")
		b.ReportMetric(per(held.heap, base.heap), "heap-KiB/agent")
		b.ReportMetric(per(held.stack, base.stack), "stack-KiB/agent")
		b.ReportMetric(per(held.rss, base.rss), "rss-KiB/agent")
		b.ReportMetric(float64(held.goroutines-base.goroutines)/float64(agents), "goroutines/agent")
	}
}

// mem is what this process holds, after two GCs: objects in a sync.Pool
// (gRPC's buffers) survive the first.
type mem struct {
	heap, stack, rss uint64
	goroutines       int
}

func memNow() mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := loadgen.RSS(os.Getpid())
	return mem{heap: ms.HeapAlloc, stack: ms.StackInuse, rss: rss, goroutines: runtime.NumGoroutine()}
}

// loadgenJob is what the child process runs, passed in its environment.
type loadgenJob struct {
	Target  loadgen.Target
	Agents  int
	Seconds int
}

// loadgenResult is what it measured, on its last line.
type loadgenResult struct {
	Rate, P50, P99 float64
	Count, Failed  int
	Errors         map[string]int
	Err            string
}

const loadgenJobEnv = "CLEARANCE_BENCH_LOADGEN_JOB"

// TestIngestLoadgenProcess is BenchmarkIngestStream's agents, run only as
// its child process: it prints "connected" once every agent is, waits for
// a line on stdin, runs the ingest phase and prints "result" and the
// figures as JSON.
func TestIngestLoadgenProcess(t *testing.T) {
	raw := os.Getenv(loadgenJobEnv)
	if raw == "" {
		t.Skip("run by BenchmarkIngestStream")
	}
	var job loadgenJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatal(err)
	}
	in := bufio.NewReader(os.Stdin)
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		Target: &job.Target, Agents: job.Agents, Duration: time.Duration(job.Seconds) * time.Second,
		Phases: []string{"ingest"}, IngestConcurrency: job.Agents,
		Connected: func() {
			fmt.Println("connected")
			_, _ = in.ReadString('\n')
		},
	})
	out := loadgenResult{}
	if err != nil {
		out.Err = err.Error()
	} else {
		out = loadgenResult{Rate: res.Ingest.Rate(), P50: ms(res.Ingest.P50), P99: ms(res.Ingest.P99),
			Count: res.Ingest.Count, Failed: res.Failed, Errors: res.Errors}
	}
	j, _ := json.Marshal(out)
	fmt.Printf("result %s\n", j)
}

// loadgenProcess is the child process running the agents.
type loadgenProcess struct{ *testkit.Child }

func startLoadgenProcess(b *testing.B, job loadgenJob) *loadgenProcess {
	b.Helper()
	return &loadgenProcess{testkit.StartChild(b, "TestIngestLoadgenProcess", loadgenJobEnv, job)}
}

// await reads the child's output up to the line starting with word and
// returns the rest of that line.
func (p *loadgenProcess) await(b *testing.B, word string) string {
	b.Helper()
	for p.Out.Scan() {
		line := p.Out.Text()
		if line == word {
			return ""
		}
		if len(line) > len(word) && line[:len(word)+1] == word+" " {
			return line[len(word)+1:]
		}
	}
	b.Fatalf("loadgen process ended before %q: %v", word, p.Out.Err())
	return ""
}

func (p *loadgenProcess) next(b *testing.B) {
	b.Helper()
	if _, err := io.WriteString(p.Stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
}

func (p *loadgenProcess) wait(b *testing.B) {
	b.Helper()
	p.Stdin.Close()
	for p.Out.Scan() {
	}
	if err := p.Cmd.Wait(); err != nil {
		b.Fatalf("loadgen process: %v", err)
	}
}

// startIngestBench starts an in-process verifier on loopback with the
// production defaults and the real clock (reports are signed now). commits
// counts the transactions its group commit has committed.
func startIngestBench(b *testing.B) (target *loadgen.Target, commits func() int64) {
	b.Helper()
	dir := b.TempDir()
	cfg := baseConfig(filepath.Join(dir, "data"), "../../examples/policies.yaml")
	srv := runBenchServer(b, cfg)
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		b.Fatal(err)
	}
	st, ok := srv.Store.(*sqlite.Store)
	if !ok {
		b.Fatalf("the store is %T, not SQLite", srv.Store)
	}
	commits = func() int64 { all, _ := st.Commits(); return all }
	return &loadgen.Target{GRPCAddr: srv.GRPCAddr.String(), RootPEM: srv.CA.RootPEM(), Token: string(tok[:len(tok)-1])}, commits
}

func writeProfile(b *testing.B, dir, name string) { b.Helper(); writeProfileAs(b, dir, name, name) }

// writeProfileAs writes the runtime profile name to dir/file.pprof.
func writeProfileAs(b *testing.B, dir, name, file string) {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, file+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
