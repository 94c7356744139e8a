// Package browser starts headless Debian chromium for dashboard tests,
// with the flags this sandboxed, offline machine needs, and reads page
// content through chromedp.
package browser
