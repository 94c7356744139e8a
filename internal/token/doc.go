// Package token is the maintenance token: a signed, expiring grant for one
// host, encoded "fmt1.<payload>.<signature>". It builds on every platform,
// so that the public signing API (pkg/policy) and Sentinel, which honours
// tokens, share one encoding.
package token
