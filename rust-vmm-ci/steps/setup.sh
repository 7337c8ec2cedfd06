#!/usr/bin/env bash
# Step `setup`: install what the other steps need, and nothing more.
#
# - Debian packages (one `apt-get update`, only when a package is
#   missing, so a cached machine skips apt entirely);
# - cargo-llvm-cov and cargo-deny, built with `cargo install --locked`
#   only when missing (they stay in ~/.cargo/bin; building them from
#   source costs minutes);
# - the crates in Cargo.lock (`cargo fetch`, cached in
#   ~/.cargo/registry), so later steps, and cargo-deny's --offline
#   mode, find every dependency locally.
#
# The Rust toolchain itself must already be there (rustup, with rustfmt
# and clippy): rustup cannot download anything on our machines.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned so every machine runs the same tool versions. Bump them here.
CARGO_LLVM_COV_VERSION="0.9.1"
CARGO_DENY_VERSION="0.20.2"

# --- Rust toolchain --------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
echo "toolchain: $(rustc --version), LLVM $(rustc_llvm_major)"

# --- Debian packages -------------------------------------------------
llvm_major="$(rustc_llvm_major)"
[ -n "$llvm_major" ] || die "cannot read the LLVM version from 'rustc -vV'"
APT_PACKAGES=(
	build-essential # cc and friends, for build scripts and -sys crates
	pkg-config      # finds C libraries for -sys crates
	jq              # reads cargo-llvm-cov's JSON summary
	shellcheck      # lints our CI scripts
	# llvm-cov and llvm-profdata matching rustc's LLVM, for coverage.
	# On Debian 12 llvm-22 comes from bookworm-security.
	"llvm-${llvm_major}"
	# vhost-device-sound's default features: alsa links libasound,
	# pipewire links libpipewire-0.3 and runs bindgen (libclang).
	# None of them is on a new machine of ours. (A crate can also list
	# its packages itself, in its apt-packages.txt: see below.)
	libasound2-dev
	libpipewire-0.3-dev
	libclang-dev
)

# A crate that needs more Debian packages (a C library's -dev package,
# a tool its tests run) lists them in its own apt-packages.txt, one per
# line, '#' starts a comment. Its owner edits only that file.
while read -r pkg; do
	APT_PACKAGES+=("$pkg")
done < <(crate_apt_packages)

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "apt: all ${#APT_PACKAGES[@]} packages already installed"
else
	echo "apt: installing ${missing[*]}"
	log="$(mktemp)"
	# Other apt users on the machine hold the dpkg lock for a while:
	# wait for it instead of failing.
	apt_opts=(-qq -o DPkg::Lock::Timeout=600)
	if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1; then
		cat "$log"
		die "apt-get update failed"
	fi
	if ! apt-get "${apt_opts[@]}" install -y --no-install-recommends \
		"${missing[@]}" >"$log" 2>&1; then
		cat "$log"
		die "apt-get install failed (is llvm-${llvm_major} available? see 'apt-cache policy llvm-${llvm_major}')"
	fi
	rm -f "$log"
fi

use_debian_llvm
[ -x "$LLVM_COV" ] || die "$LLVM_COV not found"
[ -x "$LLVM_PROFDATA" ] || die "$LLVM_PROFDATA not found"
echo "coverage tools: $LLVM_COV, $LLVM_PROFDATA"

# --- cargo tools -----------------------------------------------------
# install_tool <crate> <version> <cargo subcommand>
install_tool() {
	local crate="$1" version="$2" sub="$3" start
	if cargo "$sub" --version >/dev/null 2>&1; then
		echo "cargo: $crate already installed ($(cargo "$sub" --version | head -n1))"
		return
	fi
	echo "cargo: installing $crate $version from source (takes minutes)"
	start=$SECONDS
	# Without our RUSTFLAGS: -D warnings is for our code, and a new
	# rustc warning in a tool's own source must not stop CI.
	env -u RUSTFLAGS cargo install --locked --quiet --version "$version" "$crate"
	echo "cargo: installed $crate in $((SECONDS - start))s"
}
install_tool cargo-llvm-cov "$CARGO_LLVM_COV_VERSION" llvm-cov
install_tool cargo-deny "$CARGO_DENY_VERSION" deny

# --- crates ----------------------------------------------------------
# Cargo.lock is committed and must match the Cargo.toml files: a
# manifest change committed without its lock update fails here, in
# seconds, rather than building against versions nobody reviewed.
cargo fetch --locked --quiet ||
	die "Cargo.lock does not match the Cargo.toml files: run 'cargo update --workspace' and commit Cargo.lock"
echo "cargo: dependencies in Cargo.lock fetched"

# --- compiled dependencies (CI only; see lib.sh) ---------------------
# The cache is emptied when the host compiler changes (its artifacts
# would never be used again) or when it grows past its bound: cargo
# keeps the artifacts of every past build of our own crates, and this
# is simpler and safer than pruning them one by one.
CI_TARGET_CACHE_MAX_GB="${CI_TARGET_CACHE_MAX_GB:-30}"
if [ -L "$REPO_ROOT/target" ] && [ -d "$CI_TARGET_CACHE" ]; then
	stamp="$(rustc -vV | sha256sum | cut -c1-16)"
	size_gb="$(du -sxBG "$CI_TARGET_CACHE" | cut -f1 | tr -d G)"
	if [ "$(cat "$CI_TARGET_CACHE/stamp" 2>/dev/null)" != "$stamp" ]; then
		echo "target cache: new compiler, starting empty ($CI_TARGET_CACHE)"
		find "$CI_TARGET_CACHE" -mindepth 2 -maxdepth 2 -exec rm -rf {} +
	elif [ "$size_gb" -gt "$CI_TARGET_CACHE_MAX_GB" ]; then
		echo "target cache: ${size_gb} GB is over ${CI_TARGET_CACHE_MAX_GB} GB, starting empty"
		find "$CI_TARGET_CACHE" -mindepth 2 -maxdepth 2 -exec rm -rf {} +
	else
		echo "target cache: reusing ${size_gb} GB in $CI_TARGET_CACHE"
	fi
	echo "$stamp" >"$CI_TARGET_CACHE/stamp"
	# What the last run left for people to read is not an input of this
	# one: a failed scenario's logs must be this run's.
	rm -rf "$REPO_ROOT/target/guest-rig" "$REPO_ROOT/target/coverage"
fi
