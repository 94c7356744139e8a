// Package apt drives Debian's packaging tools for vmlab: it compares Debian
// version strings, reads the machine's apt sources to find its Debian mirror,
// keeps a private package index (its own sources list and lists directory,
// never the machine's), downloads packages from it, and installs missing host
// packages with apt-get.
package apt
