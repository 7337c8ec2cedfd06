#!/usr/bin/env bash
# Step `deny`: every dependency's licence is one deny.toml allows, no
# banned or duplicated crate slips in, and every crate comes from
# crates.io.
#
# The `advisories` check is left out: it needs the RustSec advisory
# database, which is fetched from a git host our machines cannot
# reach. `--offline` makes cargo-deny read the crates from the local
# cargo cache (filled by the setup step) instead of updating an index.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A no-op when setup already ran; lets this step run alone.
cargo fetch --quiet
cargo deny --offline check licenses bans sources
