#!/usr/bin/env bash
# Step `virgl`: vhost-device-gpu's 3D mode on the real virglrenderer.
# rust-vmm-ci/virgl/provision.sh puts virglrenderer >= 1.3 in a private
# prefix under ~/.cache (about 20 s cold, cached after), then the gpu crate is
# built with rutabaga's virgl_renderer component linked against it and
# its virglrenderer_* tests run the daemon on EGL surfaceless (Mesa's
# llvmpipe when there is no GPU). The other steps build the virgl code
# without the library (`--all-features`); this one makes it run.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_lines="$(rust-vmm-ci/virgl/provision.sh)" || die "virglrenderer provisioning failed"
eval "$env_lines"
echo "virglrenderer $(pkg-config --modversion virglrenderer) from $PKG_CONFIG_PATH"

features=(--features "virgl,rutabaga_gfx/virgl_renderer")
cargo build -p vhost-device-gpu "${features[@]}" --bins
cargo test -p vhost-device-gpu "${features[@]}" --test virgl -- --ignored virglrenderer_
