#!/usr/bin/env bash
# Step `clippy`: the workspace lints ([workspace.lints] in Cargo.toml)
# plus clippy's defaults, on every target and feature, warnings denied.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cargo clippy --workspace --all-targets --all-features -- -D warnings
