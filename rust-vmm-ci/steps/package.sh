#!/usr/bin/env bash
# Step `package`: every publishable crate packages as crates.io would take
# it (metadata: description, licence, readme, keywords, categories,
# repository; a version on every path dependency), and each packaged
# archive builds on its own: cargo unpacks it and compiles its library and
# binaries from the archive alone, with the workspace's other unpublished
# crates (common, used by every device) served from a local overlay
# registry of the archives just made. So a file that exists only in this
# repository (an include_str! outside the crate, a file left out of the
# archive) fails here. The archives' builds reuse the dependencies already
# compiled in target/: about 20 s more than packaging alone, warm.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The crates with publish = false: xtask, the rig, the benchmark.
cargo package --workspace --locked --allow-dirty \
	--exclude xtask --exclude vhost-device-rig --exclude vhost-device-bench
