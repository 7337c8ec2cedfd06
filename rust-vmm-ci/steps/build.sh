#!/usr/bin/env bash
# Step `build`: every target of every crate (lib, bins, tests, benches,
# examples) compiles without a warning (RUSTFLAGS="-D warnings", set
# in lib.sh). Debug only: the guest step builds the release binaries
# it boots.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cargo build --workspace --all-targets
