# shellcheck shell=bash
# Shared setup for the CI step scripts in rust-vmm-ci/steps/.
#
# Each step script sources this file, so a step can be run on its own
# (`rust-vmm-ci/steps/clippy.sh`) with the same environment that
# rust-vmm-ci/test.sh gives it.

# The repository root: this file lives in <root>/rust-vmm-ci/steps/.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT" || exit 1

# cargo-installed tools (cargo-llvm-cov, cargo-deny) live in
# $CARGO_HOME/bin; a non-login shell (CI) may not have it on PATH.
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
*":$CARGO_BIN:"*) ;;
*) PATH="$CARGO_BIN:$PATH" ;;
esac
export PATH

# Nothing here may prompt: CI has no stdin.
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Build, clippy, doc and coverage all deny warnings. Using the same
# RUSTFLAGS in every step lets them share build-script and dependency
# artifacts in target/ instead of rebuilding them per step.
export RUSTFLAGS="${RUSTFLAGS:--D warnings}"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:--D warnings}"

# CI builds from a fresh clone and never reuses incremental state:
# writing it only costs time and disk.
if [ -n "${CI:-}" ]; then
	export CARGO_INCREMENTAL=0
fi

# The LLVM major version rustc was built with. Coverage needs
# llvm-cov/llvm-profdata of the same major version to read the
# profiles; we take them from Debian's llvm-<major> package instead
# of rustup's llvm-tools component, which cannot be downloaded here.
rustc_llvm_major() {
	rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p'
}

# Point cargo-llvm-cov at Debian's LLVM tools unless the caller already
# chose some.
use_debian_llvm() {
	local major dir
	major="$(rustc_llvm_major)"
	dir="/usr/lib/llvm-${major}/bin"
	export LLVM_COV="${LLVM_COV:-$dir/llvm-cov}"
	export LLVM_PROFDATA="${LLVM_PROFDATA:-$dir/llvm-profdata}"
}

# Print a message and fail the step.
die() {
	echo "error: $*" >&2
	exit 1
}

# Print a notice in a form that stands out in a long log.
notice() {
	echo "notice: $*"
}
