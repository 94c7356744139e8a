// Package kernel fetches and caches the Debian cloud kernels vmlab boots:
// for each kernel line (5.10, 6.1, 6.12) it resolves the newest package in
// a private apt index at download time, extracts the kernel image and the
// modules the lab loads, and keeps them in a cache directory outside the
// repository.
package kernel
