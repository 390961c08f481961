#!/usr/bin/env bash
# Fuzz fut-image's parser/verifier for a bounded time (default 60 s). Needs the nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Seeds: the imgtool-signed
# fixture images. Exits non-zero on any crash; the crashing input is saved under artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
mkdir -p corpus/verify
cp ../../../fixtures/images/imgtool/*.bin corpus/verify/
cargo +nightly fuzz run verify corpus/verify -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 25
