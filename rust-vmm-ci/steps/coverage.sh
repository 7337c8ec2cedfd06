#!/usr/bin/env bash
# Step `coverage`: runs the unit and integration tests, once, under
# cargo-llvm-cov, and holds line coverage to the committed score.
#
# The tests run only here (not again in a plain `cargo test`) to save
# CI time; their usual `test result: ...` lines go to stdout. Doctests
# run in the doc step, `#[ignore]`d guest tests in the guest step.
#
# The config is coverage_config_<arch>.json (arch from `uname -m`), in
# rust-vmm's format:
#   coverage_score  line coverage in percent that the tree must keep;
#   exclude_path    regex of source paths left out of the figure
#                   (cargo-llvm-cov --ignore-filename-regex);
#   crate_features  "" runs with --all-features; otherwise the
#                   features to pass with --features.
#
# Policy: the run fails when coverage drops more than 0.5 below the
# score. rust-vmm also fails when it rises more than 0.5 above it; we
# deliberately only print a notice then, so that a good test landing in
# one crate does not break CI for everyone until someone bumps the
# number. Raise the committed score when asked to.
#
# Usage: coverage.sh [--update]
#   --update  after measuring, write the measured score (rounded down
#             to two decimals) into the config instead of checking it.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

update=false
case "${1:-}" in
"") ;;
--update) update=true ;;
*) die "usage: $0 [--update]" ;;
esac

command -v jq >/dev/null || die "jq not found: run rust-vmm-ci/steps/setup.sh"
cargo llvm-cov --version >/dev/null 2>&1 ||
	die "cargo-llvm-cov not found: run rust-vmm-ci/steps/setup.sh"
use_debian_llvm
[ -x "$LLVM_COV" ] || die "$LLVM_COV not found: run rust-vmm-ci/steps/setup.sh"

config="coverage_config_$(uname -m).json"
[ -f "$config" ] || die "no coverage config for this architecture: $config"
score="$(jq -r '.coverage_score' "$config")"
exclude="$(jq -r '.exclude_path // ""' "$config")"
features="$(jq -r '.crate_features // ""' "$config")"

args=(--workspace)
if [ -n "$features" ]; then
	args+=(--features "$features")
else
	args+=(--all-features)
fi
# The report below must leave out the same files as the run.
filter=()
if [ -n "$exclude" ]; then
	filter=(--ignore-filename-regex "$exclude")
fi

summary="${CARGO_TARGET_DIR:-target}/coverage/summary.json"
mkdir -p "$(dirname "$summary")"
echo "config: $config (score $score, exclude '$exclude', features '${features:-<all>}')"
echo "running the tests under cargo llvm-cov ${args[*]}"
cargo llvm-cov "${args[@]}" "${filter[@]}" --json --summary-only --output-path "$summary"

# A per-file table from the same profile data, for whoever reads the
# log to find what lost coverage. Cheap: nothing is rebuilt or re-run.
cargo llvm-cov report --summary-only "${filter[@]}" ||
	notice "could not print the per-file table (the check below still applies)"

measured="$(jq -r '.data[0].totals.lines.percent' "$summary")"

check_coverage_score "$config" "$measured" "$update" "$0 --update"
