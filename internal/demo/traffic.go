package demo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/netlab"
)

// Verdicts a source's traffic should get from the sample blocklist.
const (
	Blocked  = "blocked"
	Allowed  = "allowed"
	LogOnly  = "log-only"
	Excepted = "allow-exception"
)

// Source is an address in namespace A that sends to namespace B.
type Source struct {
	Addr netip.Addr
	// Rule is the blocklist rule that matches it ("" for none).
	Rule   string
	Expect string
	// Quiet sources send nothing on their own; tests send from them.
	Quiet bool
}

// Sources are the demo's senders, IPv4 and IPv6.
var Sources = []Source{
	{Addr: netip.MustParseAddr("10.77.0.1"), Expect: Allowed},
	{Addr: netip.MustParseAddr("10.77.66.6"), Rule: "10.77.66.0/24", Expect: Blocked},
	{Addr: netip.MustParseAddr("10.77.99.9"), Rule: "10.77.99.0/24", Expect: Excepted},
	{Addr: netip.MustParseAddr("10.77.55.5"), Rule: "10.77.55.0/24", Expect: LogOnly},
	{Addr: netip.MustParseAddr("10.77.88.8"), Rule: "10.77.64.0/18", Expect: Blocked, Quiet: true},
	{Addr: netip.MustParseAddr("fd77::1"), Expect: Allowed},
	{Addr: netip.MustParseAddr("fd77::66:6"), Rule: "fd77::66:0/112", Expect: Blocked},
	{Addr: netip.MustParseAddr("fd77::55:5"), Rule: "fd77::55:0/112", Expect: LogOnly},
}

// Namespace B's addresses and the port it listens on.
var (
	DstV4 = netip.MustParseAddr("10.77.0.2")
	DstV6 = netip.MustParseAddr("fd77::2")
)

// Port is the UDP port namespace B listens on.
const Port = 7777

func netlabAddrs() (a, b []netip.Prefix) {
	for _, s := range Sources {
		bits := 16
		if s.Addr.Is6() {
			bits = 64
		}
		a = append(a, netip.PrefixFrom(s.Addr, bits))
	}
	return a, []netip.Prefix{netip.PrefixFrom(DstV4, 16), netip.PrefixFrom(DstV6, 64)}
}

// Dst is the destination for traffic from src.
func Dst(src netip.Addr) netip.Addr {
	if src.Is6() {
		return DstV6
	}
	return DstV4
}

// traffic sends from every non-quiet source at a bounded rate.
type traffic struct {
	sent   map[netip.Addr]*atomic.Uint64
	errs   atomic.Uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startTraffic opens one socket per source inside namespace A and sends
// rate datagrams per second from each until stop.
func startTraffic(side *netlab.Side, rate int) (*traffic, error) {
	t := &traffic{sent: map[netip.Addr]*atomic.Uint64{}}
	var conns []*net.UDPConn
	var srcs []netip.Addr
	for _, s := range Sources {
		t.sent[s.Addr] = new(atomic.Uint64)
		if s.Quiet || rate <= 0 {
			continue
		}
		var c *net.UDPConn
		err := side.Do(func() error {
			network := "udp4"
			if s.Addr.Is6() {
				network = "udp6"
			}
			var err error
			c, err = net.DialUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.Addr, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(Dst(s.Addr), Port)))
			return err
		})
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("traffic from %s: %w", s.Addr, err)
		}
		conns = append(conns, c)
		srcs = append(srcs, s.Addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	for i, c := range conns {
		src := srcs[i]
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer c.Close()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			msg := []byte("fortress-demo " + src.String())
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if _, err := c.Write(msg); err != nil {
					t.errs.Add(1)
					continue
				}
				t.sent[src].Add(1)
			}
		}()
	}
	return t, nil
}

func (t *traffic) stop() {
	if t == nil {
		return
	}
	t.cancel()
	t.wg.Wait()
}

// Sent returns how many datagrams src has sent.
func (t *traffic) Sent(src netip.Addr) uint64 {
	if c := t.sent[src]; c != nil {
		return c.Load()
	}
	return 0
}
