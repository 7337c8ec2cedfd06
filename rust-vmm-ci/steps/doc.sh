#!/usr/bin/env bash
# Step `doc`: the API docs build without a warning (broken links
# included), and their examples pass. cargo-llvm-cov does not run
# doctests on stable, so the coverage step cannot stand in for the
# second command.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cargo doc --workspace --no-deps --all-features
cargo test --workspace --all-features --doc
