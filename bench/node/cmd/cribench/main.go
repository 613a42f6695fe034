// cribench times CRI CreateContainer on several containerd nodes, interleaved
// (scripts/bench-node.sh). Each target is one containerd with its own NRI
// set-up (no plugin, kubefence, the reference plugin); every round creates
// one container on each target in a fresh random order, removes it again,
// and records only the CreateContainer call's wall time, so drift in machine
// load falls on all targets alike.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type target struct {
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint"`
	Handler   string `json:"handler"`
	Sandbox   string `json:"sandbox"`
	Container string `json:"container"`
	// ArgsPrefix, when set, is what the created container's process args
	// must start with (checked on the warm-up creates).
	ArgsPrefix string `json:"args_prefix,omitempty"`

	client  runtime.RuntimeServiceClient
	sbCfg   *runtime.PodSandboxConfig
	ctrCfg  *runtime.ContainerConfig
	podID   string
	Samples []float64 `json:"samples_us"`
}

type targets []*target

func (t *targets) String() string { return fmt.Sprint(len(*t)) }

func (t *targets) Set(v string) error {
	tg := &target{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("target field %q is not key=value", kv)
		}
		switch k {
		case "name":
			tg.Name = val
		case "endpoint":
			tg.Endpoint = val
		case "handler":
			tg.Handler = val
		case "sandbox":
			tg.Sandbox = val
		case "container":
			tg.Container = val
		case "args-prefix":
			tg.ArgsPrefix = val
		default:
			return fmt.Errorf("unknown target field %q", k)
		}
	}
	if tg.Name == "" || tg.Endpoint == "" || tg.Sandbox == "" || tg.Container == "" {
		return fmt.Errorf("target needs name, endpoint, sandbox and container: %q", v)
	}
	*t = append(*t, tg)
	return nil
}

func loadJSON(path string, into any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "cribench: "+format+"\n", a...)
	os.Exit(1)
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// nearest-rank
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func (t *target) create(ctx context.Context, round int) (string, time.Duration, error) {
	// a fresh name (attempt) and log file per create; cloned outside the timing
	cfg := proto.Clone(t.ctrCfg).(*runtime.ContainerConfig)
	cfg.Metadata.Attempt = uint32(round)
	cfg.LogPath = fmt.Sprintf("%s-%d.log", cfg.Metadata.Name, round)
	start := time.Now()
	resp, err := t.client.CreateContainer(ctx, &runtime.CreateContainerRequest{
		PodSandboxId:  t.podID,
		Config:        cfg,
		SandboxConfig: t.sbCfg,
	})
	d := time.Since(start)
	if err != nil {
		return "", d, err
	}
	return resp.ContainerId, d, nil
}

func (t *target) checkArgs(ctx context.Context, id string) error {
	if t.ArgsPrefix == "" {
		return nil
	}
	st, err := t.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return err
	}
	var info struct {
		RuntimeSpec struct {
			Process struct {
				Args []string `json:"args"`
			} `json:"process"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		return fmt.Errorf("container info: %w", err)
	}
	got := strings.Join(info.RuntimeSpec.Process.Args, " ")
	if !strings.HasPrefix(got, t.ArgsPrefix) {
		return fmt.Errorf("args %q do not start with %q", got, t.ArgsPrefix)
	}
	return nil
}

func main() {
	var ts targets
	flag.Var(&ts, "target", "name=,endpoint=unix://...,handler=,sandbox=FILE,container=FILE[,args-prefix=...] (repeat)")
	n := flag.Int("n", 200, "timed creates per target")
	warm := flag.Int("warmup", 10, "untimed creates per target first")
	out := flag.String("out", "", "write raw samples (JSON) here")
	seed := flag.Int64("seed", time.Now().UnixNano(), "shuffle seed")
	flag.Parse()
	if len(ts) == 0 {
		die("no -target")
	}
	ctx := context.Background()
	for _, t := range ts {
		conn, err := grpc.NewClient(t.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			die("%s: %v", t.Name, err)
		}
		defer conn.Close()
		t.client = runtime.NewRuntimeServiceClient(conn)
		t.sbCfg = &runtime.PodSandboxConfig{}
		t.ctrCfg = &runtime.ContainerConfig{}
		if err := loadJSON(t.Sandbox, t.sbCfg); err != nil {
			die("%s: sandbox config: %v", t.Name, err)
		}
		if err := loadJSON(t.Container, t.ctrCfg); err != nil {
			die("%s: container config: %v", t.Name, err)
		}
		if t.ctrCfg.Metadata == nil {
			die("%s: container config has no metadata", t.Name)
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		resp, err := t.client.RunPodSandbox(rctx, &runtime.RunPodSandboxRequest{Config: t.sbCfg, RuntimeHandler: t.Handler})
		cancel()
		if err != nil {
			die("%s: RunPodSandbox: %v", t.Name, err)
		}
		t.podID = resp.PodSandboxId
	}
	defer func() {
		for _, t := range ts {
			c, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, _ = t.client.StopPodSandbox(c, &runtime.StopPodSandboxRequest{PodSandboxId: t.podID})
			_, _ = t.client.RemovePodSandbox(c, &runtime.RemovePodSandboxRequest{PodSandboxId: t.podID})
			cancel()
		}
	}()

	rng := rand.New(rand.NewSource(*seed))
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	for round := 0; round < *warm+*n; round++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			t := ts[i]
			c, cancel := context.WithTimeout(ctx, 60*time.Second)
			id, d, err := t.create(c, round)
			if err != nil {
				cancel()
				die("%s: CreateContainer (round %d): %v", t.Name, round, err)
			}
			if round < *warm {
				if err := t.checkArgs(c, id); err != nil {
					cancel()
					die("%s: %v", t.Name, err)
				}
			} else {
				t.Samples = append(t.Samples, float64(d.Microseconds()))
			}
			if _, err := t.client.RemoveContainer(c, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
				cancel()
				die("%s: RemoveContainer: %v", t.Name, err)
			}
			cancel()
		}
	}

	if *out != "" {
		b, _ := json.MarshalIndent(map[string]any{"n": *n, "warmup": *warm, "seed": *seed, "targets": ts}, "", " ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			die("%v", err)
		}
	}
	type row struct{ p50, p90, p99, max, mean float64 }
	stats := map[string]row{}
	for _, t := range ts {
		s := append([]float64(nil), t.Samples...)
		sort.Float64s(s)
		var sum float64
		for _, v := range s {
			sum += v
		}
		stats[t.Name] = row{percentile(s, 50), percentile(s, 90), percentile(s, 99), s[len(s)-1], sum / float64(len(s))}
	}
	base, hasBase := stats[ts[0].Name]
	fmt.Printf("%d timed creates per target (after %d warm-up), interleaved, seed %d; baseline %s\n", *n, *warm, *seed, ts[0].Name)
	fmt.Println("| target | p50 ms | p90 ms | p99 ms | max ms | mean ms | added p50 ms | added p99 ms | p50 ratio | p99 ratio | paired added, median [95% CI] ms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, t := range ts {
		r := stats[t.Name]
		added := " |  |  |  | "
		if hasBase && t != ts[0] {
			lo, med, hi := pairedMedian(t.Samples, ts[0].Samples)
			added = fmt.Sprintf("%+.3f | %+.3f | %.3fx | %.3fx | %+.3f [%+.3f, %+.3f]",
				(r.p50-base.p50)/1e3, (r.p99-base.p99)/1e3, r.p50/base.p50, r.p99/base.p99, med/1e3, lo/1e3, hi/1e3)
		}
		fmt.Printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n", t.Name, r.p50/1e3, r.p90/1e3, r.p99/1e3, r.max/1e3, r.mean/1e3, added)
	}
}

// pairedMedian: the median of the per-round differences a[i]-b[i] (both
// creates of a round ran back to back, so slow drift of the machine's load
// cancels), with a distribution-free 95% confidence interval of that median
// from the order statistics (normal approximation of the binomial).
func pairedMedian(a, b []float64) (lo, med, hi float64) {
	d := make([]float64, 0, len(a))
	for i := range a {
		if i < len(b) {
			d = append(d, a[i]-b[i])
		}
	}
	if len(d) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(d)
	n := float64(len(d))
	k := int(n/2 - 1.96*math.Sqrt(n)/2)
	if k < 0 {
		k = 0
	}
	j := len(d) - 1 - k
	return d[k], percentile(d, 50), d[j]
}
