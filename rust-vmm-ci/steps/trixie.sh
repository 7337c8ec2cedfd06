# shellcheck shell=bash
# A Debian trixie root for the `msrv` and `aarch64` steps (sourced by
# them after lib.sh; not a step of its own).
#
# Why a trixie root: rustup on our machines cannot download another
# toolchain or another target's standard library, while Debian trixie
# packages Rust 1.85.1 (exactly our declared rust-version) with
# multiarch standard libraries, so `libstd-rust-dev:arm64` installs
# beside the native one. The same root holds the aarch64 cross C
# compiler (for -sys crates and linking), the arm64 -dev libraries that
# crates link, qemu-user to run the aarch64 test binaries, and LLVM 19
# (the LLVM of Debian's rustc 1.85) for the aarch64 coverage figure.
#
# The root is our own, under ${VHOST_DEVICE_CACHE:-~/.cache/vhost-device}/
# rust-trixie: the guest rig's trixie root is left alone. It is built on
# first use (debootstrap and apt: a few minutes) and reused afterwards
# while its stamp (the suite and package lists here, and the crates'
# apt-packages.txt) does not change; a cached run touches neither debootstrap nor apt.
#
# The work tree and $CARGO_HOME are bind-mounted into the root at their
# own paths, so cargo inside sees the same sources and crate cache as
# outside. Each step builds in a target directory of its own under
# target/ (target/msrv, target/aarch64), so neither invalidates the
# native build in target/debug.

TRIXIE_CACHE="${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/rust-trixie"
TRIXIE_ROOT="$TRIXIE_CACHE/root"
TRIXIE_SUITE=trixie
# Debian's rustc links the system LLVM of this major version.
TRIXIE_LLVM=19
HOST_CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

# Native packages: the compiler, what build scripts and -sys crates
# need (as setup.sh installs on the host), and the cross tools.
TRIXIE_PACKAGES=(
	rustc cargo # 1.85.1 in trixie: the declared MSRV
	gcc libc6-dev pkgconf jq
	libasound2-dev libpipewire-0.3-dev libclang-dev # vhost-device-sound
	"llvm-$TRIXIE_LLVM"                             # llvm-profdata, llvm-cov
	gcc-aarch64-linux-gnu                           # cross C compiler and linker
	qemu-user                                       # static qemu-aarch64
)
# arm64 packages (multiarch): the standard library matching rustc, the
# C library headers, and every -dev library a crate links.
TRIXIE_ARM64_PACKAGES=(
	libstd-rust-dev
	libc6-dev
	libasound2-dev
	libpipewire-0.3-dev
	# What an aarch64 PipeWire client loads at run time (the protocol and
	# client-node modules, the SPA support plugins): without them an
	# aarch64 daemon's pw_stream_new fails under qemu-user.
	libpipewire-0.3-modules
	libspa-0.2-modules
	# alsa-lib's pipewire PCM, which the sound test of the alsa backend
	# through PipeWire loads in the aarch64 daemon (without it PREPARE
	# fails with S_IO_ERR under qemu-user).
	pipewire-alsa
)

# The crates' own Debian packages: installed natively (tools their
# tests start), and each -dev one for arm64 too (a C library to link).
trixie_collect_crate_packages() {
	local pkg
	while read -r pkg; do
		TRIXIE_PACKAGES+=("$pkg")
		case "$pkg" in
		*-dev) TRIXIE_ARM64_PACKAGES+=("$pkg") ;;
		esac
	done < <(crate_apt_packages)
}

trixie_mirror() {
	local m
	m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -n1 | tr -d ' ' || true)"
	m="${m:-http://deb.debian.org/debian}"
	echo "${m%/}"
}

# The script that enters the root, with /proc, /sys and /dev, the work
# tree and $CARGO_HOME mounted (at their own paths) in the caller's new
# mount namespace, so nothing stays mounted when it ends. /proc is bound,
# not mounted afresh: a user namespace may not mount a proc of a pid
# namespace it does not own. Arguments: root, work tree, cargo home,
# the real directory of the tree's target/ when it lies outside the tree
# (CI's cached target, see lib.sh) or "", then the command.
TRIXIE_ENTER='
	set -e
	r="$1"; repo="$2"; ch="$3"; tgt="$4"; shift 4
	mount --rbind /proc "$r/proc"
	mount --rbind /sys "$r/sys"
	mount --rbind /dev "$r/dev"
	mkdir -p "$r$repo" "$r$ch"
	mount --bind "$repo" "$r$repo"
	mount --bind "$ch" "$r$ch"
	if [ -n "$tgt" ]; then
		mkdir -p "$r$tgt"
		mount --bind "$tgt" "$r$tgt"
	fi
	exec chroot "$r" "$@"'

# What follows TRIXIE_ENTER's script on its command line: its arguments,
# and a cleared environment with only what the build needs, plus
# TRIXIE_ENV (NAME=VALUE words the steps set), then CMD run in the work
# tree.
TRIXIE_ENV=()
trixie_enter_args() {
	local tgt=""
	if [ -L "$REPO_ROOT/target" ]; then
		tgt="$(readlink -f "$REPO_ROOT/target")"
	fi
	TRIXIE_ARGS=("$TRIXIE_ROOT" "$REPO_ROOT" "$HOST_CARGO_HOME" "$tgt"
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8
		DEBIAN_FRONTEND=noninteractive CARGO_HOME="$HOST_CARGO_HOME"
		CARGO_TERM_COLOR="$CARGO_TERM_COLOR" "${TRIXIE_ENV[@]}"
		sh -c 'cd "$1" && shift && exec "$@"' sh "$REPO_ROOT" "$@")
}

# in_trixie CMD...: run CMD as root inside the trixie root.
in_trixie() {
	trixie_enter_args "$@"
	unshare --mount --propagation private -- sh -c "$TRIXIE_ENTER" sh "${TRIXIE_ARGS[@]}"
}

# in_trixie_emulated CMD...: as in_trixie, but in a user namespace of
# our own with a binfmt_misc instance that runs aarch64 ELF files with
# the root's qemu-aarch64. A test binary that starts a daemon binary
# (CARGO_BIN_EXE_*) then runs it under qemu-user too. Since Linux 6.7
# binfmt_misc is per user namespace, so the host's registrations are
# not touched; an older kernel fails here with a clear message.
in_trixie_emulated() {
	local qemu="$TRIXIE_ROOT/usr/bin/qemu-aarch64"
	[ -x "$qemu" ] || die "$qemu missing: the trixie root is incomplete"
	trixie_enter_args "$@"
	# The magic and mask match ELF64, little-endian, ET_EXEC or ET_DYN,
	# EM_AARCH64 (0xb7). F: the kernel opens the interpreter now, so it
	# is found from inside the chroot too.
	unshare --user --map-root-user --mount --propagation private -- sh -c '
		set -e
		qemu="$1"; enter="$2"; shift 2
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
			echo "error: cannot mount binfmt_misc in a user namespace (needs Linux >= 6.7)" >&2
			exit 1
		}
		printf "%s" ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$qemu:F" \
			>/proc/sys/fs/binfmt_misc/register
		exec sh -c "$enter" sh "$@"' sh "$qemu" "$TRIXIE_ENTER" "${TRIXIE_ARGS[@]}"
}

# Build (or reuse) the root. Serialised with a lock, so the two steps,
# or two runs, never provision it at the same time.
trixie_provision() {
	[ "$(id -u)" = 0 ] || die "the trixie root needs root (debootstrap, chroot)"
	[ "$(uname -m)" = x86_64 ] || die "the trixie root is set up for x86_64 hosts only"
	trixie_collect_crate_packages
	local stamp
	# What shapes the root: the suite and the package lists.
	stamp="$(printf '%s\n' "$TRIXIE_SUITE" "${TRIXIE_PACKAGES[@]}" "${TRIXIE_ARM64_PACKAGES[@]}" |
		sha256sum | cut -d' ' -f1)"
	mkdir -p "$TRIXIE_CACHE"
	exec 8>"$TRIXIE_CACHE/.lock"
	flock 8 || die "cannot lock $TRIXIE_CACHE/.lock"
	if [ -f "$TRIXIE_CACHE/stamp" ] && [ "$(cat "$TRIXIE_CACHE/stamp")" = "$stamp" ]; then
		echo "trixie root: up to date ($TRIXIE_ROOT, stamp ${stamp:0:12})"
		exec 8>&-
		return 0
	fi
	local need=()
	command -v debootstrap >/dev/null || need+=(debootstrap)
	command -v unshare >/dev/null || need+=(util-linux)
	if [ "${#need[@]}" -gt 0 ]; then
		echo "trixie root: installing host packages ${need[*]}"
		apt-get -qq -o DPkg::Lock::Timeout=600 update >/dev/null || die "apt-get update failed"
		apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need[@]}" >/dev/null ||
			die "apt-get install ${need[*]} failed"
	fi
	if [ ! -f "$TRIXIE_ROOT/.debootstrap-done" ]; then
		local mirror
		mirror="$(trixie_mirror)"
		echo "trixie root: debootstrap $TRIXIE_SUITE (minbase) from $mirror into $TRIXIE_ROOT"
		rm -rf "$TRIXIE_ROOT.tmp"
		debootstrap --variant=minbase "$TRIXIE_SUITE" "$TRIXIE_ROOT.tmp" "$mirror" \
			>"$TRIXIE_CACHE/debootstrap.log" 2>&1 ||
			die "debootstrap failed, see $TRIXIE_CACHE/debootstrap.log"
		rm -rf "$TRIXIE_ROOT"
		mv "$TRIXIE_ROOT.tmp" "$TRIXIE_ROOT"
		touch "$TRIXIE_ROOT/.debootstrap-done"
	fi
	# No service may start inside the root (pipewire, dbus).
	printf '#!/bin/sh\nexit 101\n' >"$TRIXIE_ROOT/usr/sbin/policy-rc.d"
	chmod +x "$TRIXIE_ROOT/usr/sbin/policy-rc.d"
	local arm64=() p log="$TRIXIE_CACHE/apt.log"
	for p in "${TRIXIE_ARM64_PACKAGES[@]}"; do arm64+=("$p:arm64"); done
	echo "trixie root: apt-get install ${TRIXIE_PACKAGES[*]} ${arm64[*]}"
	in_trixie dpkg --add-architecture arm64
	in_trixie apt-get -qq update >"$log" 2>&1 || die "apt-get update in the root failed, see $log"
	in_trixie apt-get -q install -y --no-install-recommends "${TRIXIE_PACKAGES[@]}" "${arm64[@]}" \
		>>"$log" 2>&1 || die "apt-get install in the root failed, see $log"
	in_trixie apt-get clean
	echo "$stamp" >"$TRIXIE_CACHE/stamp"
	exec 8>&-
	echo "trixie root: ready, $(in_trixie rustc --version)"
}
