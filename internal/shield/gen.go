package shield

//go:generate go tool bpf2go -target amd64,arm64 -type shield_dir -type shield_dir16 -type shield_v4_block -type shield_vals -type shield_key128 -type shield_counter -type shield_rule_key -type shield_rule_flags -type shield_layout -type shield_control -type shield_stat -type shield_sample -type shield_verdict_bits -type shield_mode_flags shield ../../bpf/shield/shield.c -- -I../../bpf/include -I../../bpf/lib
