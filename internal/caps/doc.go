// Package caps names the Linux capabilities each Fortress layer needs to
// run as a non-root user, and reads which of them a process holds. The
// table here is the one the systemd unit (deploy/systemd), the Compose
// service (deploy/compose) and the DaemonSet (deploy/kubernetes) grant, and
// the one `fortressctl probe` checks. Tests keep them in step: the unit's
// here, the containers' in package deploy.
package caps
