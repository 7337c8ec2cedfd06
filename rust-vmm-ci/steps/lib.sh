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

# Where the machine-wide caches live (guest image, trixie root, virgl,
# compiled dependencies).
VHOST_DEVICE_CACHE="${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}"

# In CI, `target/` and `fuzz/target/` of the fresh clone are symlinks to
# directories in the machine's cache, so that a run recompiles our own
# crates but not the 300-odd registry crates (their sources, and so
# their fingerprints, do not change between clones). This is what
# rust-cache does for GitHub's runners; it takes about five minutes off
# a run of this machine's size. A tree that already has a real target/
# (a developer's checkout) is left alone. VHOST_DEVICE_CI_TARGET_CACHE=0
# turns it off; setup.sh empties the cache when the compiler changes or
# it grows past its bound.
CI_TARGET_CACHE="$VHOST_DEVICE_CACHE/ci-target"
link_cached_target() {
	local link="$REPO_ROOT/$1" dir="$CI_TARGET_CACHE/$2"
	[ -e "$link" ] || [ -L "$link" ] && return 0
	mkdir -p "$dir" && ln -s "$dir" "$link"
}
# Whether this run uses the cache (test.sh also takes its run lock then).
ci_target_cache_on() {
	[ -n "${CI:-}" ] && [ "${VHOST_DEVICE_CI_TARGET_CACHE:-1}" != 0 ]
}
if ci_target_cache_on; then
	link_cached_target target main
	link_cached_target fuzz/target fuzz
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

# The Debian packages the crates list themselves, one per line: each
# crates/<name>/apt-packages.txt or staging/<name>/apt-packages.txt
# names one package per line, '#' starts a comment.
crate_apt_packages() {
	local list pkg
	shopt -s nullglob
	for list in "$REPO_ROOT"/crates/*/apt-packages.txt "$REPO_ROOT"/staging/*/apt-packages.txt; do
		while read -r pkg _; do
			case "$pkg" in
			"" | "#"*) continue ;;
			esac
			echo "$pkg"
		done <"$list"
	done
	shopt -u nullglob
}

# check_coverage_score CONFIG MEASURED UPDATE UPDATE_CMD: hold the
# measured line coverage (percent) to CONFIG's coverage_score. With
# UPDATE=true, write MEASURED (rounded down to two decimals) into CONFIG
# instead. Fails when MEASURED is more than 0.5 below the score; more
# than 0.5 above only prints a notice (see README.md: a good test landing
# must not turn CI red for everyone). UPDATE_CMD is what the messages
# tell the reader to run.
check_coverage_score() {
	local config="$1" measured="$2" update="$3" update_cmd="$4" score new tmp verdict
	score="$(jq -r '.coverage_score' "$config")"
	echo "line coverage: ${measured}% (committed score in $config: ${score}%)"
	if [ "$update" = true ]; then
		new="$(awk -v m="$measured" 'BEGIN { printf "%.2f", int(m * 100) / 100 }')"
		tmp="$(mktemp)"
		jq --argjson s "$new" '.coverage_score = $s' "$config" >"$tmp"
		mv "$tmp" "$config"
		echo "updated $config: coverage_score $score -> $new"
		return 0
	fi
	verdict="$(awk -v m="$measured" -v s="$score" 'BEGIN {
		if (m < s - 0.5) print "low"; else if (m > s + 0.5) print "high"; else print "ok"
	}')"
	case "$verdict" in
	low)
		die "line coverage ${measured}% is more than 0.5 below the committed ${score}% in $config: add tests (or, if the drop is deliberate, run '$update_cmd' and commit $config)"
		;;
	high)
		notice "line coverage ${measured}% is more than 0.5 above the committed ${score}%: please raise it with '$update_cmd' and commit $config"
		;;
	*)
		echo "coverage ok"
		;;
	esac
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
