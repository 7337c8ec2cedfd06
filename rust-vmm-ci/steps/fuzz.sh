#!/usr/bin/env bash
# Step `fuzz`: every cargo-fuzz target in fuzz/ runs for a short time on
# its committed corpus, so that a parser or a device that starts to crash,
# hang or balloon fails CI. FUZZ_SECONDS (default 30) is the budget of the
# whole step, split evenly among the targets (at least 1 s each): adding a
# target does not make the step longer. The targets are built once, then
# each binary runs on its own. The long runs and their figures are in
# FUZZING.md.
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

cargo fuzz build --sanitizer none --release
host="$(rustc -vV | sed -n 's/^host: //p')"
# cargo-fuzz honours CARGO_TARGET_DIR (a developer's own target dir).
bin="${CARGO_TARGET_DIR:-target}/$host/release"
mapfile -t targets < <(cargo fuzz list)
each=$((FUZZ_SECONDS / ${#targets[@]}))
if [ "$each" -lt 1 ]; then
	each=1
fi

for target in "${targets[@]}"; do
	# New inputs and any crash go to scratch directories; the committed
	# corpus is only read, so CI never changes the tree.
	scratch="$(mktemp -d)"
	artifacts="$(mktemp -d)"
	# Where a target puts its own files (vhost_user's daemon socket).
	tmp="$(mktemp -d)"
	echo "fuzz: $target for ${each}s"
	if ! TMPDIR="$tmp" "$bin/$target" "$scratch" "corpus/$target" \
		-max_total_time="$each" -rss_limit_mb=512 -timeout=10 \
		-artifact_prefix="$artifacts/" -print_final_stats=1; then
		echo "fuzz: $target failed; the input that did it:" >&2
		ls -l "$artifacts" >&2
		for crash in "$artifacts"/*; do
			[ -f "$crash" ] && od -A x -t x1z "$crash" | head -n 32 >&2
		done
		exit 1
	fi
	rm -rf "$scratch" "$artifacts" "$tmp"
done
