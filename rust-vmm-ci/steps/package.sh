#!/usr/bin/env bash
# Step `package`: every publishable crate packages as crates.io would take
# it: metadata (description, licence, readme, keywords, categories,
# repository), a version on every path dependency, and no file that
# exists only in this repository. --no-verify skips rebuilding each crate
# from its archive, which would compile the whole workspace a second time;
# the build step has compiled the same sources.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The crates with publish = false: xtask, the rig, the benchmark.
cargo package --workspace --locked --no-verify --allow-dirty \
	--exclude xtask --exclude vhost-device-rig --exclude vhost-device-bench
