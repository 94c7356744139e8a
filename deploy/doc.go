// Package deploy holds no code: it is the home of the shipped deployments
// of fortress-agent (systemd/, compose/, kubernetes/) and of the test that
// keeps the container ones in step with the capability table in
// internal/caps and with README.md in this directory.
package deploy
