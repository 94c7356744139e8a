package serviceradar

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
)

// OCSF identifiers of the File System Activity class (OCSF 1.1).
const (
	OCSFVersion       = "1.1.0"
	OCSFCategorySys   = 1    // System Activity
	OCSFClassFileSys  = 1001 // File System Activity
	ocsfCategoryName  = "System Activity"
	ocsfClassName     = "File System Activity"
	ocsfProductName   = "Fortress"
	ocsfProductVendor = "ServiceRadar"
)

// File System Activity activity ids.
const (
	ActivityUnknown       = 0
	ActivityCreate        = 1
	ActivityRead          = 2
	ActivityUpdate        = 3
	ActivityDelete        = 4
	ActivityRename        = 5
	ActivitySetAttributes = 6
	ActivitySetSecurity   = 7
	ActivityMount         = 12
	ActivityUnmount       = 13
	ActivityOpen          = 14
	ActivityOther         = 99
)

var activityNames = map[int]string{
	ActivityUnknown: "Unknown", ActivityCreate: "Create", ActivityRead: "Read", ActivityUpdate: "Update",
	ActivityDelete: "Delete", ActivityRename: "Rename", ActivitySetAttributes: "Set Attributes",
	ActivitySetSecurity: "Set Security", ActivityMount: "Mount", ActivityUnmount: "Unmount", ActivityOpen: "Open",
	ActivityOther: "Other",
}

// activityOf maps a Sentinel operation onto an OCSF activity. Operations
// that are not file-system verbs (ptrace, BPF object access, lockdown,
// role refusals) are Other, with the operation as activity_name.
func activityOf(op string) int {
	switch op {
	case "open":
		return ActivityOpen
	case "open_write", "truncate":
		return ActivityUpdate
	case "create", "mkdir", "mknod", "symlink", "link":
		return ActivityCreate
	case "unlink", "rmdir":
		return ActivityDelete
	case "rename_from", "rename_to":
		return ActivityRename
	case "setattr", "setxattr", "removexattr", "ioctl_setflags":
		return ActivitySetAttributes
	case "set_acl":
		return ActivitySetSecurity
	case "mount":
		return ActivityMount
	case "umount":
		return ActivityUnmount
	case "":
		return ActivityUnknown
	}
	return ActivityOther
}

// OCSF severity ids.
const (
	SeverityUnknown       = 0
	SeverityInformational = 1
	SeverityMedium        = 3
	SeverityHigh          = 4
	SeverityCritical      = 5
)

func severityOf(e fortress.Event) int {
	switch e.Severity {
	case fortress.SeverityInfo:
		return SeverityInformational
	case fortress.SeverityWarning:
		if e.Denied() {
			return SeverityHigh
		}
		return SeverityMedium
	case fortress.SeverityCritical:
		return SeverityCritical
	}
	if e.Kind == fortress.KindViolation {
		return SeverityHigh
	}
	return SeverityUnknown
}

// Event is one security event for ServiceRadar's event pipeline.
type Event struct {
	Time time.Time
	// SeverityID is the OCSF severity (1 informational .. 5 critical).
	SeverityID int
	// JSON is the OCSF File System Activity record.
	JSON json.RawMessage
}

// OCSF record shapes (only the attributes Fortress fills).
type (
	ocsfRecord struct {
		CategoryUID  int            `json:"category_uid"`
		CategoryName string         `json:"category_name"`
		ClassUID     int            `json:"class_uid"`
		ClassName    string         `json:"class_name"`
		ActivityID   int            `json:"activity_id"`
		ActivityName string         `json:"activity_name"`
		TypeUID      int            `json:"type_uid"`
		TypeName     string         `json:"type_name"`
		SeverityID   int            `json:"severity_id"`
		Severity     string         `json:"severity"`
		StatusID     int            `json:"status_id"`
		Status       string         `json:"status"`
		ActionID     int            `json:"action_id"`
		Action       string         `json:"action"`
		Disposition  string         `json:"disposition"`
		DispositionI int            `json:"disposition_id"`
		Time         int64          `json:"time"`
		Message      string         `json:"message"`
		Metadata     ocsfMetadata   `json:"metadata"`
		Device       ocsfDevice     `json:"device"`
		Actor        ocsfActor      `json:"actor"`
		File         ocsfFile       `json:"file"`
		Unmapped     map[string]any `json:"unmapped,omitempty"`
	}
	ocsfMetadata struct {
		Version string      `json:"version"`
		Product ocsfProduct `json:"product"`
		LogName string      `json:"log_name"`
	}
	ocsfProduct struct {
		Name       string      `json:"name"`
		VendorName string      `json:"vendor_name"`
		Version    string      `json:"version,omitempty"`
		Feature    ocsfFeature `json:"feature"`
	}
	ocsfFeature struct {
		Name string `json:"name"`
	}
	ocsfDevice struct {
		Hostname string `json:"hostname,omitempty"`
		UID      string `json:"uid"`
		TypeID   int    `json:"type_id"`
	}
	ocsfActor struct {
		Process ocsfProcess `json:"process"`
		User    ocsfUser    `json:"user"`
	}
	ocsfProcess struct {
		PID  uint32    `json:"pid,omitempty"`
		Name string    `json:"name,omitempty"`
		File *ocsfFile `json:"file,omitempty"`
		User ocsfUser  `json:"user"`
	}
	ocsfUser struct {
		UID string `json:"uid"`
	}
	ocsfFile struct {
		Path   string `json:"path"`
		Name   string `json:"name"`
		TypeID int    `json:"type_id"`
	}
)

var severityNames = map[int]string{SeverityUnknown: "Unknown", SeverityInformational: "Informational", 2: "Low",
	SeverityMedium: "Medium", SeverityHigh: "High", SeverityCritical: "Critical"}

// OCSF maps a Sentinel violation or file-integrity event onto an OCSF File
// System Activity record. Other events (Shield samples, critical
// conditions) are not file-system activity: ok is false for them.
func OCSF(e fortress.Event, agentID, hostname, version string) (rec Event, ok bool) {
	if e.Kind != fortress.KindViolation && e.Kind != fortress.KindFIM {
		return Event{}, false
	}
	act := activityOf(e.Op)
	actName := activityNames[act]
	if act == ActivityOther {
		actName = e.Op
	}
	sev := severityOf(e)
	r := ocsfRecord{
		CategoryUID: OCSFCategorySys, CategoryName: ocsfCategoryName,
		ClassUID: OCSFClassFileSys, ClassName: ocsfClassName,
		ActivityID: act, ActivityName: actName,
		TypeUID: OCSFClassFileSys*100 + act, TypeName: ocsfClassName + ": " + actName,
		SeverityID: sev, Severity: severityNames[sev],
		Time: e.Time.UnixMilli(),
		Metadata: ocsfMetadata{Version: OCSFVersion, LogName: "fortress." + e.Kind,
			Product: ocsfProduct{Name: ocsfProductName, VendorName: ocsfProductVendor, Version: version, Feature: ocsfFeature{Name: "sentinel"}}},
		Device: ocsfDevice{Hostname: hostname, UID: agentID},
		File:   ocsfFile{Path: e.Path, Name: path.Base(e.Path)},
		Unmapped: map[string]any{"fortress": map[string]any{"kind": e.Kind, "op": e.Op, "verdict": e.Verdict,
			"detail": e.Detail, "layer": e.Layer}},
	}
	if e.Path == "" {
		r.File.Name = ""
	}
	uid := strconv.FormatUint(uint64(e.UID), 10)
	r.Actor = ocsfActor{User: ocsfUser{UID: uid}, Process: ocsfProcess{PID: e.PID, Name: e.Comm, User: ocsfUser{UID: uid}}}
	if e.Exe != "" {
		r.Actor.Process.File = &ocsfFile{Path: e.Exe, Name: path.Base(e.Exe)}
	}
	// Outcome: the kernel refused it (Blocked), would have refused it in
	// audit mode (Detected), or let it happen and logged it.
	switch {
	case e.Denied():
		r.StatusID, r.Status, r.ActionID, r.Action, r.DispositionI, r.Disposition = 2, "Failure", 2, "Denied", 2, "Blocked"
	case e.Kind == fortress.KindViolation:
		r.StatusID, r.Status, r.ActionID, r.Action, r.DispositionI, r.Disposition = 1, "Success", 1, "Allowed", 15, "Detected"
	default:
		r.StatusID, r.Status, r.ActionID, r.Action, r.DispositionI, r.Disposition = 1, "Success", 1, "Allowed", 17, "Logged"
	}
	who := e.Exe
	if who == "" {
		who = e.Comm
	}
	verb := e.Verdict
	if verb == "" {
		verb = "observed"
	}
	r.Message = fmt.Sprintf("%s %s of %s by %s (pid %d, uid %d)", verb, e.Op, e.Path, who, e.PID, e.UID)
	data, err := json.Marshal(r)
	if err != nil {
		return Event{}, false
	}
	return Event{Time: e.Time, SeverityID: sev, JSON: data}, true
}

// Events delivers Sentinel violations and file-integrity events as OCSF
// records. Events that find the channel full are dropped and counted in
// the status summary. A nil Service delivers nothing.
func (s *Service) Events() <-chan Event {
	if s == nil {
		return nil
	}
	return s.events
}

// pump drains Fortress's events: file-system ones become OCSF records,
// critical ones are logged (they also show in the status summary).
func (s *Service) pump(ctx context.Context) {
	defer close(s.done)
	src := s.eng.Events()
	host, version := hostname(), s.eng.Status().AgentVersion
	for {
		select {
		case <-ctx.Done():
			return
		case e, open := <-src:
			if !open {
				return
			}
			if e.Kind == fortress.KindCritical {
				s.log.Error("fortress critical event", "layer", e.Layer, "detail", e.Detail, "count", e.Count)
				continue
			}
			rec, ok := OCSF(e, s.cfg.AgentID, host, version)
			if !ok {
				continue
			}
			select {
			case s.events <- rec:
			default:
				s.dropped.Add(1)
			}
		}
	}
}
