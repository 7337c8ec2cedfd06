#!/usr/bin/env bash
# Step `fmt`: the tree is formatted as rustfmt.toml says.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# rustfmt colours its diff even into a pipe; keep CI logs readable.
color=auto
[ -t 1 ] || color=never
cargo fmt --all -- --check --color "$color"
