package sentinel

//go:generate go tool bpf2go -target amd64 -type sentinel_inode -type sentinel_object -type sentinel_identity -type sentinel_guard -type sentinel_settings -type sentinel_event sentinel ../../bpf/sentinel/sentinel.c -- -I../../bpf/include -I../../bpf/lib
