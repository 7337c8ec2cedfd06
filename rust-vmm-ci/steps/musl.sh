#!/usr/bin/env bash
# Step `musl`: the pure-Rust devices (i2c, gpio, can, rpmsg, bluetooth)
# type-check for x86_64-unknown-linux-musl, where libc's types differ from
# glibc's (an ioctl request is a c_int there). `cargo check` rather than
# build: it finds those errors at a fraction of the cost, and the Rust
# musl target links self-contained, with no C toolchain to go wrong.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
	# rustup fetches the target's standard library from outside the
	# package registries our machines reach; where that is refused, say
	# so loudly and skip, rather than fail every run on such a machine.
	if ! rustup target add "$target"; then
		echo "musl: SKIPPED: the $target standard library cannot be installed on this machine (rustup target add failed)" >&2
		exit 0
	fi
fi
cargo check --locked --target "$target" \
	-p vhost-device-i2c -p vhost-device-gpio -p vhost-device-can \
	-p vhost-device-rpmsg -p vhost-device-bluetooth
