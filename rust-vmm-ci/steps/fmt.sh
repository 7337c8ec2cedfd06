#!/usr/bin/env bash
# Step `fmt`: the tree is formatted as rustfmt.toml says.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cargo fmt --all -- --check
