#!/usr/bin/env bash
# Run every guest scenario and host-kernel test of the workspace: provision
# (cached), then the ignored tests, one guest at a time.
#
# Convention (README.md): guest and host-kernel tests are #[ignore]d and named
# guest_* or host_kernel_*; this script runs exactly those. Exits non-zero on
# any failure, including a provisioning failure.
#
# Usage: run-tests.sh [extra cargo test args, e.g. -p vhost-device-i2c]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."

start=$(date +%s)
if ! "$HERE/provision.sh" >/tmp/vhost-device-guest-provision.$$.log 2>&1; then
    cat /tmp/vhost-device-guest-provision.$$.log >&2
    rm -f /tmp/vhost-device-guest-provision.$$.log
    echo "run-tests: FAILED: guest provisioning failed; no guest test can run" >&2
    exit 1
fi
grep '^provision:' /tmp/vhost-device-guest-provision.$$.log >&2 || true
rm -f /tmp/vhost-device-guest-provision.$$.log
echo "run-tests: provisioned in $(( $(date +%s) - start ))s" >&2

pkgs=("$@")
[[ ${#pkgs[@]} -gt 0 ]] || pkgs=(--workspace)

# Build first: the test binaries, and the workspace binaries scenarios start.
cargo build "${pkgs[@]}" --bins --quiet
cargo test "${pkgs[@]}" --no-run --quiet

status=0
cargo test "${pkgs[@]}" -- --ignored --test-threads=1 guest_ host_kernel_ || status=1

# The gpu's virgl scenario needs the daemon linked against virglrenderer
# >= 1.3, which rust-vmm-ci/virgl/provision.sh provides (cached; the
# virgl step has usually built this already). Only for the whole
# workspace or when the gpu crate is asked for.
if [[ " ${pkgs[*]} " == *" --workspace "* || " ${pkgs[*]} " == *vhost-device-gpu* ]]; then
    virgl_env="$("$HERE/../virgl/provision.sh")" || {
        echo "run-tests: FAILED: virglrenderer provisioning failed; the gpu's virgl guest scenario cannot run" >&2
        exit 1
    }
    (
        eval "$virgl_env"
        features=(-p vhost-device-gpu --features "virgl,rutabaga_gfx/virgl_renderer")
        cargo build "${features[@]}" --bins --quiet
        cargo test "${features[@]}" --test guest_virgl -- --ignored --test-threads=1 guest_
    ) || status=1
fi
if [[ $status -ne 0 ]]; then
    echo "run-tests: FAILED (logs of failed scenarios are under target/guest-rig/)" >&2
else
    echo "run-tests: all guest tests passed in $(( $(date +%s) - start ))s" >&2
fi
exit $status
