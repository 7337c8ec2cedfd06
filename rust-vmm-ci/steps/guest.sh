#!/usr/bin/env bash
# Step `guest`: the tests that need a guest kernel under QEMU or a host
# kernel feature (the `#[ignore]`d tests), run by the guest rig's own
# script, rust-vmm-ci/guest/run-tests.sh. It provisions QEMU, a kernel
# and an initramfs into ~/.cache, then runs
# `cargo test --workspace -- --ignored --test-threads=1`.
#
# While the rig is being written the script may not exist yet: then
# this step says so and passes. Once it exists, its failure fails the
# run.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rig=rust-vmm-ci/guest/run-tests.sh
# The guest tests are the only proof that real drivers work with our
# devices: a missing or broken rig fails the run, never skips it.
[ -x "$rig" ] || die "$rig is missing or not executable"
exec "$rig"
