#!/usr/bin/env bash
# Step `msrv`: the workspace builds (all targets, all features, with the
# committed Cargo.lock) and its unit and integration tests pass with
# exactly the Rust version the workspace declares (`rust-version` in
# Cargo.toml), which is Debian trixie's rustc 1.85.1, run in the trixie
# root of steps/trixie.sh. Output goes to target/msrv.
#
# A dependency that needs a newer compiler fails the build here: then
# either pin it to an older release (`cargo update -p <crate>` keeps
# MSRV-compatible versions, see .cargo/config.toml), or raise
# `rust-version` and say why in the CHANGELOG.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=rust-vmm-ci/steps/trixie.sh
source "$(dirname "${BASH_SOURCE[0]}")/trixie.sh"

trixie_provision

declared="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
[ -n "$declared" ] || die "no rust-version in Cargo.toml"
TRIXIE_ENV=(
	CARGO_TARGET_DIR="$REPO_ROOT/target/msrv"
	RUSTFLAGS="$RUSTFLAGS"
	CARGO_INCREMENTAL=0
)
have="$(in_trixie rustc --version | cut -d' ' -f2)"
echo "declared rust-version: $declared; compiler: rustc $have"
# 1.85 matches 1.85.x: the declared version is major.minor.
case "$have" in
"$declared" | "$declared".*) ;;
*) die "the trixie root's rustc $have is not the declared rust-version $declared: update trixie.sh or Cargo.toml" ;;
esac

in_trixie cargo build --workspace --all-targets --all-features --locked
# Unit and integration tests; doctests run in the doc step.
in_trixie cargo test --workspace --all-features --locked --no-fail-fast --lib --bins --tests
