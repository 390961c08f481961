#!/usr/bin/env bash
# Fuzz fut-image's parser/verifier for a bounded time (default 60 s). Needs the nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Seeds: the imgtool-signed
# fixture images, and images signed with the test key in the layouts the tests build (written by
# `examples/fuzz_seeds.rs`: KEYHASH and PUBKEY, extra TLVs, no protected TLVs, both slots).
# CARGO_TARGET_DIR and CARGO_BUILD_JOBS are honoured (cargo reads them). Exits non-zero on any
# crash or failed assertion; the failing input is saved under artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
corpus="$PWD/corpus/verify"
mkdir -p "$corpus"
cp ../../../fixtures/images/imgtool/*.bin "$corpus"/
# The seed writer is a host-workspace example: run it from the workspace root (pinned toolchain).
(cd ../../.. && cargo run -q -p fut-image --features std --example fuzz_seeds -- "$corpus")
# The tail shows the last coverage lines and the final stats (not libFuzzer's dictionary dump).
cargo +nightly fuzz run verify "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -v '# Uses: ' | tail -n 25
