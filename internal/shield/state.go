package shield

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The rule-to-slot table is saved after every swap so that a restarted agent
// can attribute the kernel's counters to rules. It is bound to the policy in
// force by the serial stored in the kernel's shield_state map.
const (
	stateFile  = "shield-rules.bin"
	stateMagic = "FORTRESS-SHIELD-RULES-1\n"
)

type stateHeader struct {
	Serial uint64
	Next   uint32
	Count  uint32
}

type stateRecord struct {
	Key   [17]byte
	Flags byte
	Slot  uint32
}

func (s *Shield) statePath() string {
	if s.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(s.cfg.StateDir, stateFile)
}

// saveRuleState writes the table atomically (temp file, fsync, rename).
func (s *Shield) saveRuleState() error {
	path := s.statePath()
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.StateDir, ".shield-rules-*")
	if err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	w.WriteString(stateMagic)
	binary.Write(w, binary.LittleEndian, stateHeader{Serial: s.ctl.Serial, Next: s.rules.next, Count: uint32(len(s.rules.slots))})
	recs := make([]stateRecord, 0, len(s.rules.slots))
	for pk, e := range s.rules.slots {
		recs = append(recs, stateRecord{Key: pk, Flags: e.flags, Slot: e.slot})
	}
	binary.Write(w, binary.LittleEndian, recs)
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("save rule state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save rule state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	return nil
}

// loadRuleState restores the table if it belongs to the policy in force.
func (s *Shield) loadRuleState() error {
	path := s.statePath()
	if path == "" {
		return errNoState
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load rule state: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, len(stateMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != stateMagic {
		return errors.New("load rule state: not a shield rule state file")
	}
	var h stateHeader
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return fmt.Errorf("load rule state: %w", err)
	}
	if h.Serial != s.ctl.Serial {
		return fmt.Errorf("load rule state: saved for policy serial %d, kernel has %d", h.Serial, s.ctl.Serial)
	}
	if h.Count >= s.cap.Slots || h.Next > s.cap.Slots {
		return fmt.Errorf("load rule state: %d rules do not fit %d slots", h.Count, s.cap.Slots)
	}
	recs := make([]stateRecord, h.Count)
	if err := binary.Read(r, binary.LittleEndian, recs); err != nil {
		return fmt.Errorf("load rule state: %w", err)
	}
	entries := make(map[[17]byte]slotEntry, len(recs))
	for _, rec := range recs {
		if rec.Slot == 0 || rec.Slot >= h.Next {
			return fmt.Errorf("load rule state: slot %d out of range", rec.Slot)
		}
		entries[rec.Key] = slotEntry{slot: rec.Slot, flags: rec.Flags}
	}
	s.rules.restore(entries, h.Next)
	return nil
}
