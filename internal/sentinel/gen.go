package sentinel

//go:generate sh testdata/build.sh
//go:generate go tool bpf2go -target amd64,arm64 -type sentinel_inode -type sentinel_object -type sentinel_identity -type sentinel_guard -type sentinel_settings -type sentinel_event -type sentinel_grant -type sentinel_claim -type sentinel_refusal -type sentinel_prctl -type sentinel_role_stat -type sentinel_stack -type sentinel_stack_trust -type sentinel_identity_flag -type sentinel_stack_flag -type sentinel_release -type sentinel_object_flag -type sentinel_role -type sentinel_mode -type sentinel_guard_kind -type sentinel_verdict -type sentinel_stat sentinel ../../bpf/sentinel/sentinel.c -- -I../../bpf/include -I../../bpf/lib
