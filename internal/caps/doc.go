// Package caps names the Linux capabilities each Fortress layer needs to
// run as a non-root user, and reads which of them a process holds. The
// table here is the one the systemd unit grants (deploy/systemd) and the
// one `fortressctl probe` checks; a test keeps the two in step.
package caps
