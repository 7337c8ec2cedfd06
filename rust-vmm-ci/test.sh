#!/usr/bin/env bash
# The one test command: sets up what it needs on a fresh Debian 12
# machine (as root, with the Rust toolchain from rustup) and runs every
# check, stopping at the first failure.
#
# Usage: rust-vmm-ci/test.sh [STEP...]
#   With no argument, runs every step below in order. With arguments,
#   runs only the named steps (still in the order given), e.g.
#   `rust-vmm-ci/test.sh setup clippy`. Each step is also a script of
#   its own: rust-vmm-ci/steps/<step>.sh.
#   --list prints the steps.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The steps, in the order they run: cheap checks first, so a format
# slip fails in seconds rather than after the build. This list is the
# one place that says which checks CI runs.
STEPS=(
	setup      # apt packages, cargo-llvm-cov, cargo-deny, crates
	fmt        # cargo fmt --check
	shellcheck # our CI scripts
	build      # all targets, -D warnings
	clippy     # all targets and features, -D warnings
	doc        # rustdoc -D warnings, and the doctests
	deny       # licences, bans, sources (offline; no advisories)
	package    # cargo package of every publishable crate (no rebuild)
	musl       # pure-Rust devices type-check for x86_64-unknown-linux-musl
	coverage   # unit + integration tests under cargo-llvm-cov, score check
	virgl      # gpu 3D mode on the real virglrenderer (private prefix in ~/.cache)
	fuzz       # every cargo-fuzz target on its committed corpus, 30 s in all
	msrv       # build + tests with Rust 1.85 (Debian trixie's), the declared rust-version
	aarch64    # cross-build for aarch64, tests under qemu-user, aarch64 coverage
	guest      # #[ignore]d guest/host-kernel tests via rust-vmm-ci/guest/run-tests.sh
)

if [ "${1:-}" = "--list" ]; then
	printf '%s\n' "${STEPS[@]}"
	exit 0
fi

if [ "$#" -gt 0 ]; then
	selected=("$@")
	for step in "${selected[@]}"; do
		[ -x "$ci_dir/steps/$step.sh" ] || {
			echo "error: unknown step '$step' (steps: ${STEPS[*]})" >&2
			exit 2
		}
	done
else
	selected=("${STEPS[@]}")
fi

fmt_time() {
	printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# CPU seconds (user + system) used so far by this script's finished
# children. Printed beside wall time: on a machine shared with other
# builds, wall time says little, while CPU time / 2 is roughly what the
# step takes on our 2 idle cores.
times_file="$(mktemp)"
trap 'rm -f "$times_file"' EXIT
# Sets $cpu_now. `times` must run in this shell, not in a $(...)
# subshell, which has no finished children of its own.
cpu_now=0
read_cpu() {
	times >"$times_file"
	cpu_now=$(awk 'NR == 2 {
		s = 0
		for (i = 1; i <= NF; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
		printf "%d", s
	}' "$times_file")
}

summary=()
print_summary() {
	echo
	echo "==== summary ===="
	printf '%s\n' "${summary[@]}"
	read_cpu
	echo "total: $(fmt_time $((SECONDS - run_start))) (cpu $(fmt_time "$cpu_now"))"
}

# With CI set, target/ is the machine's shared cache (steps/lib.sh), so
# two runs at once would rebuild binaries under each other's running
# tests and wipe each other's scenario logs (seen: a guest scenario of
# one run failed while another run's build replaced its daemon). One run
# at a time holds the cache; a second waits here and says so.
# shellcheck source=rust-vmm-ci/steps/lib.sh
source "$ci_dir/steps/lib.sh"
if ci_target_cache_on; then
	mkdir -p "$CI_TARGET_CACHE"
	exec 9>"$CI_TARGET_CACHE/run.lock"
	if ! flock -n 9; then
		echo "another CI run on this machine holds $CI_TARGET_CACHE/run.lock: waiting for it"
		flock -w 5400 9 || echo "still held after 90 minutes: going on without it"
	fi
fi

run_start=$SECONDS
n=${#selected[@]}
i=0
for step in "${selected[@]}"; do
	i=$((i + 1))
	echo
	echo "==== [$i/$n] $step ($(date -u +%H:%M:%S) UTC): rust-vmm-ci/steps/$step.sh ===="
	start=$SECONDS
	read_cpu
	cpu_start=$cpu_now
	rc=0
	# 9>&-: the steps and whatever they start never hold the run lock, so
	# a process left behind cannot block the next run.
	"$ci_dir/steps/$step.sh" 9>&- || rc=$?
	took=$((SECONDS - start))
	read_cpu
	cpu=$((cpu_now - cpu_start))
	if [ "$rc" -ne 0 ]; then
		summary+=("$(printf '%-11s FAILED after %s (exit %d)' "$step" "$(fmt_time "$took")" "$rc")")
		echo "==== $step FAILED after $(fmt_time "$took") (exit $rc) ===="
		print_summary
		exit "$rc"
	fi
	summary+=("$(printf '%-11s ok  %7s  (cpu %s)' "$step" "$(fmt_time "$took")" "$(fmt_time "$cpu")")")
	echo "==== $step ok in $(fmt_time "$took") (cpu $(fmt_time "$cpu")) ===="
done

print_summary
echo "all ${n} steps passed"
