#!/usr/bin/env bash
# Step `shellcheck`: our CI scripts have no shell bugs. Only findings of
# severity "warning" and above fail; style notes are left to authors.
set -euo pipefail
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v shellcheck >/dev/null || die "shellcheck not found: run rust-vmm-ci/steps/setup.sh"
mapfile -t scripts < <(
	{
		echo .ci/run
		find rust-vmm-ci -type f -name '*.sh'
	} | sort
)
echo "checking ${#scripts[@]} scripts"
shellcheck --severity=warning --external-sources "${scripts[@]}"
