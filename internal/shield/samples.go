package shield

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/lpm"
)

// Sample is a packet a log-only rule or dry run let through.
type Sample struct {
	Time    time.Time
	Rule    lpm.Rule
	Source  netip.Addr
	IfIndex uint32
	Length  uint32
}

// Samples streams dry-run samples until ctx ends. Samples are rate-limited
// in the kernel (Config.SampleGap per CPU); those the ring could not take
// are counted in Stats().SampleLost.
func (c *Counters) Samples(ctx context.Context) (<-chan Sample, error) {
	rd, err := ringbuf.NewReader(c.samples)
	if err != nil {
		return nil, fmt.Errorf("open shield samples: %w", err)
	}
	out := make(chan Sample, 64)
	go func() {
		<-ctx.Done()
		rd.Close()
	}()
	go func() {
		defer close(out)
		for {
			rec, err := rd.Read()
			if err != nil {
				if !errors.Is(err, ringbuf.ErrClosed) {
					c.log.Warn("shield samples", "err", err)
				}
				return
			}
			smp, ok := decodeSample(rec.RawSample)
			if !ok {
				continue
			}
			select {
			case out <- smp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func decodeSample(raw []byte) (Sample, bool) {
	var d sampleData
	if _, err := binary.Decode(raw, binary.NativeEndian, &d); err != nil {
		return Sample{}, false
	}
	smp := Sample{IfIndex: d.Ifindex, Length: d.PktLen, Time: bootTime(d.TsNs)}
	if d.Family == 4 {
		smp.Source = netip.AddrFrom4([4]byte(d.Addr[:4]))
	} else {
		smp.Source = netip.AddrFrom16(d.Addr)
	}
	smp.Rule, _ = ruleFor(d.Verdict, smp.Source)
	return smp, true
}

// bootTime converts a bpf_ktime_get_ns timestamp (CLOCK_MONOTONIC) to
// wall-clock time.
func bootTime(ns uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano() - int64(ns)))
}
