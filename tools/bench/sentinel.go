package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/sentinel"
)

// benchResult is the output of `bench sentinel`. Absolute times under
// emulation mean little; the ratio, measured in one run, is the result.
type benchResult struct {
	Ops             int     `json:"ops"`
	Rounds          int     `json:"rounds"`
	BaseNsPerOp     float64 `json:"base_ns_per_op"`
	SentinelNsPerOp float64 `json:"sentinel_ns_per_op"`
	Ratio           float64 `json:"ratio"`
	// The same from the fastest round of each kind: emulation jitter only
	// ever adds time, so this is the less noisy view.
	BaseMinNsPerOp     float64 `json:"base_min_ns_per_op"`
	SentinelMinNsPerOp float64 `json:"sentinel_min_ns_per_op"`
	RatioMin           float64 `json:"ratio_min"`
	SentinelPrograms   int     `json:"sentinel_programs"`
}

// benchSentinel times a file workload on unprotected paths without and with
// Sentinel attached, alternating rounds, in the same run. Sentinel is
// loaded with a throwaway pin root and config tree; this binary is its
// agent identity only for this instance, which is removed afterwards.
func benchSentinel(ctx context.Context, args []string) (int, error) {
	fs := newFlagSet("sentinel")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	ops := fs.Int("ops", 20000, "workload iterations per round")
	rounds := fs.Int("rounds", 5, "rounds of each kind, alternating")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("bench sentinel: %v", err)}
	}
	if *ops < 1 || *rounds < 1 {
		return 2, usageError{"bench sentinel: --ops and --rounds must be positive"}
	}
	work, err := os.MkdirTemp("", "fortress-bench-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	bpfDir := filepath.Join(work, "bpf")
	cfgDir := filepath.Join(work, "etc")
	data := filepath.Join(work, "data")
	for _, d := range []string{bpfDir, cfgDir, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 1, err
		}
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "sweep.json"), []byte("{}"), 0o644); err != nil {
		return 1, err
	}
	if err := unix.Mount("bpffs", bpfDir, "bpf", 0, ""); err != nil {
		return 1, fmt.Errorf("mount bpffs: %w", err)
	}
	defer unix.Unmount(bpfDir, unix.MNT_DETACH)
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	cfg := sentinel.Config{
		PinRoot:     pins.Root(filepath.Join(bpfDir, "serviceradar")),
		AgentBinary: self,
		StagingDir:  filepath.Join(work, "staging"),
		ConfigDir:   cfgDir,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}

	var base, with []float64
	programs := 0
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		ns, err := workload(data, *ops)
		if err != nil {
			return 1, err
		}
		base = append(base, ns)
		s, err := sentinel.Start(cfg)
		if err != nil {
			if errors.Is(err, sentinel.ErrUnavailable) {
				return 3, fmt.Errorf("BPF LSM unusable here, nothing to measure: %w", err)
			}
			return 1, err
		}
		programs = len(s.Programs())
		ns, werr := workload(data, *ops)
		if err := s.Remove(); err != nil {
			return 1, fmt.Errorf("remove sentinel: %w", err)
		}
		if werr != nil {
			return 1, werr
		}
		with = append(with, ns)
	}
	if len(base) == 0 || len(with) == 0 {
		return 1, ctx.Err()
	}
	res := benchResult{Ops: *ops, Rounds: len(base), BaseNsPerOp: median(base), SentinelNsPerOp: median(with), SentinelPrograms: programs}
	res.Ratio = res.SentinelNsPerOp / res.BaseNsPerOp
	res.BaseMinNsPerOp, res.SentinelMinNsPerOp = slices.Min(base), slices.Min(with)
	res.RatioMin = res.SentinelMinNsPerOp / res.BaseMinNsPerOp
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(res)
	}
	fmt.Printf("ops %d x %d rounds: base %.0f ns/op, sentinel %.0f ns/op, ratio %.3f (%d programs)\n",
		res.Ops, res.Rounds, res.BaseNsPerOp, res.SentinelNsPerOp, res.Ratio, res.SentinelPrograms)
	return 0, nil
}

// workload: per op, open/write/read/close an existing file, then create and
// unlink another. Returns ns per op.
func workload(dir string, ops int) (float64, error) {
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, make([]byte, 4096), 0o644); err != nil {
		return 0, err
	}
	created := filepath.Join(dir, "created")
	buf := make([]byte, 64)
	start := time.Now()
	for i := 0; i < ops; i++ {
		fd, err := unix.Open(existing, unix.O_RDWR, 0)
		if err != nil {
			return 0, fmt.Errorf("open: %w", err)
		}
		if _, err := unix.Pwrite(fd, buf, 0); err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("write: %w", err)
		}
		if _, err := unix.Pread(fd, buf, 64); err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("read: %w", err)
		}
		unix.Close(fd)
		fd, err = unix.Open(created, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
		if err != nil {
			return 0, fmt.Errorf("create: %w", err)
		}
		unix.Close(fd)
		if err := unix.Unlink(created); err != nil {
			return 0, fmt.Errorf("unlink: %w", err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(ops), nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
