package paths

// The default paths of a Fortress installation.
const (
	// PinRoot is the bpffs directory of Fortress's pins.
	PinRoot = "/sys/fs/bpf/serviceradar"
	// ConfigDir is ServiceRadar's configuration directory, which Sentinel
	// protects with everything in it.
	ConfigDir = "/etc/serviceradar"
	// AgentConfig is fortress-agent's configuration file.
	AgentConfig = ConfigDir + "/fortress-agent.json"
	// TrustKey is the public key file that policy bundles (and agent
	// releases) must be signed with; TrustKeyName is its name inside
	// ConfigDir, for builds that move ConfigDir.
	TrustKey     = ConfigDir + "/" + TrustKeyName
	TrustKeyName = "fortress/trust.pem"
	// ServiceRadarCerts is where ServiceRadar keeps its TLS certificates.
	ServiceRadarCerts = ConfigDir + "/certs"
	// StateDir keeps the last applied bundle, cached lists, reported
	// counters and the used maintenance tokens.
	StateDir = "/var/lib/serviceradar/fortress"
	// AuditLog is the hash-chained audit log.
	AuditLog = "/var/log/serviceradar/fortress-audit.log"
	// StatusSocket is the agent's local status and maintenance socket.
	StatusSocket = "/run/serviceradar/fortress.sock"
	// AgentBinary is where the agent binary is installed.
	AgentBinary = "/usr/local/bin/fortress-agent"

	// ServiceRadarReleases is the release root of ServiceRadar's agent:
	// versions/<version>/ServiceRadarAgentName and the current symlink.
	ServiceRadarReleases = "/var/lib/serviceradar/agent"
	// ServiceRadarAgentName is the agent binary's name in a version.
	ServiceRadarAgentName = "serviceradar-agent"
	// ServiceRadarUpdater installs, switches and removes versions.
	ServiceRadarUpdater = "/usr/local/bin/serviceradar-agent-updater"
	// ServiceRadarSeed is the agent binary that runs before the first
	// version is installed.
	ServiceRadarSeed = "/usr/local/lib/serviceradar/agent/serviceradar-agent-seed"
)
