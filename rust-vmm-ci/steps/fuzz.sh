#!/usr/bin/env bash
# Step `fuzz`: every cargo-fuzz target in fuzz/ runs for a short time
# (FUZZ_SECONDS, default 30) on its committed corpus, so that a parser
# that starts to crash, hang or balloon fails CI. The long runs and their
# figures are in FUZZING.md.
#
# cargo-fuzz is installed here when missing (built with `cargo install
# --locked`). It passes nightly-only -Z flags to rustc; our machines have
# only the stable toolchain for certain, so RUSTC_BOOTSTRAP=1 lets stable
# accept them. No sanitizer: the targets fuzz safe Rust, and a sanitizer
# runtime would need more of the toolchain than a fresh machine has.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CARGO_FUZZ_VERSION="0.13.2"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
	cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
# lib.sh's -D warnings is for our crates; cargo-fuzz adds its own flags.
unset RUSTFLAGS
cd "$REPO_ROOT/fuzz"

for target in $(cargo fuzz list); do
	# New inputs go to a scratch directory; the committed corpus is only
	# read, so CI never changes the tree.
	scratch="$(mktemp -d)"
	echo "fuzz: $target for ${FUZZ_SECONDS}s"
	cargo fuzz run --sanitizer none --release "$target" \
		"$scratch" "corpus/$target" -- \
		-max_total_time="$FUZZ_SECONDS" -rss_limit_mb=512 -timeout=10 \
		-print_final_stats=1
	rm -rf "$scratch"
done
