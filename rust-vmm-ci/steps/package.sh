#!/usr/bin/env bash
# Step `package`: every publishable crate packages as crates.io would take
# it (metadata: description, licence, readme, keywords, categories,
# repository; a version on every path dependency), and each packaged
# archive builds on its own: cargo unpacks it and compiles its library and
# binaries from the archive alone, with the workspace's other unpublished
# crates (common, used by every device) served from a local overlay
# registry of the archives just made. So a file that exists only in this
# repository (an include_str! outside the crate, a file left out of the
# archive) fails here.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The archives are built in a target directory of their own: cargo uplifts
# their binaries, which would replace the workspace's own in target/debug.
# It is kept between runs, so only our crates are compiled again.
verify_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/package-verify"

# Our crates stay at version 0.1.0 until published, and cargo takes a
# crate of the overlay for an immutable registry crate of that version:
# it reuses the copy it unpacked under $CARGO_HOME/registry/src/ and the
# library it compiled from it, even when the archive changed (the
# archive's files keep a fixed old mtime). The devices would then be
# checked against the common of an earlier run (seen: "no method named
# set_kicks"). So drop both first: the unpacked copies of our crates in
# local registries (never crates.io's), and our crates' fingerprints in
# the archives' target directory.
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
	case "$(basename "$dir")" in
	index.crates.io-*) ;;
	*) rm -rf "$dir"vhost-device-* ;;
	esac
done
rm -rf "$verify_dir"/debug/.fingerprint/vhost-device-*

# The crates with publish = false: xtask, the rig, the benchmark.
cargo package --workspace --locked --allow-dirty --target-dir "$verify_dir" \
	--exclude xtask --exclude vhost-device-rig --exclude vhost-device-bench
