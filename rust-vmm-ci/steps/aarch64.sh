#!/usr/bin/env bash
# Step `aarch64`: cross-build the whole workspace for
# aarch64-unknown-linux-gnu (all targets, all features, -D warnings) and
# run every unit and integration test binary under qemu-user, on this
# x86_64 machine; then measure aarch64 line coverage from those runs and
# hold it to coverage_config_aarch64.json.
#
# Everything runs in the trixie root of steps/trixie.sh: Debian's rustc
# 1.85 with libstd-rust-dev:arm64, gcc-aarch64-linux-gnu as C compiler
# and linker, the arm64 -dev libraries, qemu-aarch64. The test binaries
# run through a binfmt_misc registration private to this step's user
# namespace, so a test that starts a daemon binary (CARGO_BIN_EXE_*)
# runs the aarch64 daemon under qemu-user too.
#
# The build is instrumented (-C instrument-coverage): one build serves
# both the tests and the coverage figure. Output goes to target/aarch64,
# apart from the native target/debug.
#
# Tests qemu-user cannot run are listed, each with its reason, in
# rust-vmm-ci/steps/aarch64-skip.txt and skipped here only (libtest
# --skip, exact names); the step prints the list.
#
# Pages other than 4 KiB cannot be tried here: since QEMU 9.0 qemu-user
# gives the guest program the host's page size and ignores -p /
# QEMU_PAGESIZE ("Deprecated page size option cannot change host page
# size"). The page-size dependent code takes the page size from sysconf
# and is unit-tested with 16K and 64K values instead (see README.md).
#
# Usage: aarch64.sh [--update]
#   --update  write the measured coverage into coverage_config_aarch64.json
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=rust-vmm-ci/steps/trixie.sh
source "$(dirname "${BASH_SOURCE[0]}")/trixie.sh"

update=false
case "${1:-}" in
"") ;;
--update) update=true ;;
*) die "usage: $0 [--update]" ;;
esac

TARGET=aarch64-unknown-linux-gnu
config=coverage_config_aarch64.json
skip_list=rust-vmm-ci/steps/aarch64-skip.txt

trixie_provision
command -v jq >/dev/null || die "jq not found: run rust-vmm-ci/steps/setup.sh"

target_dir="$REPO_ROOT/target/aarch64"
profiles="$target_dir/profiles"
rm -rf "$profiles"
mkdir -p "$profiles"
TRIXIE_ENV=(
	CARGO_TARGET_DIR="$target_dir"
	CARGO_BUILD_TARGET="$TARGET"
	CARGO_INCREMENTAL=0
	# Applies to the aarch64 artifacts only (with a --target, build
	# scripts and proc macros are built without RUSTFLAGS).
	RUSTFLAGS="$RUSTFLAGS -C instrument-coverage"
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
	AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
	# pkg-config finds the arm64 .pc files of the multiarch -dev packages.
	PKG_CONFIG_ALLOW_CROSS=1
	PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
	# Each process (test binary or daemon it starts) writes its own profile.
	LLVM_PROFILE_FILE="$profiles/%p-%m.profraw"
)

skips=()
echo "tests skipped on aarch64 (from $skip_list):"
while IFS= read -r line; do
	case "$line" in
	"" | "#"*) continue ;;
	esac
	name="${line%%[[:space:]]*}"
	skips+=(--skip "$name")
	echo "  $line"
done <"$skip_list"
[ "${#skips[@]}" -gt 0 ] || echo "  (none)"

cargo_args=(--workspace --all-features --locked)
in_trixie cargo build "${cargo_args[@]}" --all-targets
# qemu-user does not implement seccomp(2) (ENOSYS; a filter would apply
# to QEMU's own x86_64 system calls anyway), so the daemons the tests
# start run with no filter: the flag's environment variable, named here
# and nowhere else. The sandbox tests that need a filter are skipped.
TRIXIE_ENV+=(VHOST_DEVICE_SECCOMP=none)
# Landlock likewise: whether qemu-user passes its calls on or not, a
# ruleset would restrict QEMU's own file accesses, not the emulated
# daemon's; the Landlock test is skipped.
TRIXIE_ENV+=(VHOST_DEVICE_LANDLOCK=none)
in_trixie_emulated cargo test "${cargo_args[@]}" --no-fail-fast --lib --bins --tests -- --exact "${skips[@]}"

# The test binaries (and the daemons they start), for llvm-cov.
mapfile -t objects < <(in_trixie cargo test "${cargo_args[@]}" --lib --bins --tests --no-run \
	--message-format=json 2>/dev/null | jq -r 'select(.reason == "compiler-artifact") | .executable // empty')
[ "${#objects[@]}" -gt 0 ] || die "cargo listed no test executables"

# Coverage: the same figure as the coverage step (line coverage of the
# workspace's sources minus the config's exclude_path), from the profiles
# of every aarch64 process above.
exclude="$(jq -r '.exclude_path // ""' "$config")"
# llvm-cov takes the first binary as an argument, the others as -object.
object_args=("${objects[0]}")
for o in "${objects[@]:1}"; do object_args+=(-object "$o"); done
in_trixie "llvm-profdata-$TRIXIE_LLVM" merge -sparse -o "$profiles/merged.profdata" "$profiles"/*.profraw
summary="$target_dir/coverage-summary.json"
in_trixie "llvm-cov-$TRIXIE_LLVM" export -summary-only -instr-profile "$profiles/merged.profdata" \
	${exclude:+-ignore-filename-regex="$exclude"} "${object_args[@]}" \
	"$REPO_ROOT/crates" "$REPO_ROOT/staging" >"$summary"
measured="$(jq -r '.data[0].totals.lines.percent' "$summary")"
check_coverage_score "$config" "$measured" "$update" "$0 --update"
