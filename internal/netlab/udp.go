package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Receiver counts UDP datagrams per source address.
type Receiver struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	counts map[netip.Addr]int
	done   chan struct{}
}

// ListenUDP listens on port (IPv4 and IPv6) inside the side's namespace.
func (s *Side) ListenUDP(port int) (*Receiver, error) {
	var conn *net.UDPConn
	err := s.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: port})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: listen udp %d in %s: %w", port, s.NSName, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	r := &Receiver{conn: conn, counts: map[netip.Addr]int{}, done: make(chan struct{})}
	go r.loop()
	return r, nil
}

func (r *Receiver) loop() {
	defer close(r.done)
	buf := make([]byte, 2048)
	for {
		_, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.counts[from.Addr().Unmap()]++
		r.mu.Unlock()
	}
}

// Count returns how many datagrams arrived from src.
func (r *Receiver) Count(src netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[src]
}

// Close stops the receiver.
func (r *Receiver) Close() error {
	err := r.conn.Close()
	<-r.done
	return err
}

// SendUDP sends n datagrams from src to dst:port inside the side's
// namespace. src must be one of the side's addresses.
func (s *Side) SendUDP(src, dst netip.Addr, port, n int) error {
	return s.Do(func() error {
		network := "udp4"
		if dst.Is6() {
			network = "udp6"
		}
		c, err := net.DialUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return fmt.Errorf("netlab: dial %s -> %s: %w", src, dst, err)
		}
		defer c.Close()
		msg := []byte("fortress-netlab")
		for i := 0; i < n; i++ {
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("netlab: send %s -> %s: %w", src, dst, err)
			}
			// Pace bursts so that the veth ring and the receiver's
			// backlog never overflow, even on a slow (emulated) CPU:
			// tests count every datagram.
			if i%32 == 31 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
}
