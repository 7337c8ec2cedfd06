// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Scenarios that reset the guest: the shell prelude that tells the script
//! which boot it runs in and lets it ask the rig for a reset, and the check
//! that it ended in the last boot.
//!
//! The initramfs is the same in every boot and keeps nothing, so the boot
//! number comes from the rig, which counts the resets it did, over the
//! control serial port (`/dev/ttyS1`, as `rig-screendump` uses it).

/// Exit code of a script that ended before the resets it declared.
pub const EARLY_END: i32 = 96;
/// Exit code when the rig could not say which boot it is, or refused or
/// failed a reset.
pub const CONTROL_FAILED: i32 = 95;

/// `script` wrapped for a scenario that allows `resets` resets: it runs in
/// a subshell with `RIG_BOOT` (1, 2, …) exported and `rig_reset` defined;
/// ending with 0 before boot `resets + 1` is a failure.
pub(super) fn wrap(script: &str, resets: u32) -> String {
    let last = u64::from(resets) + 1;
    format!(
        r#"# rig prelude (Scenario::resets): RIG_BOOT and rig_reset
rig_request() {{ # REQUEST TAG: sets rig_reply to the rig's answer starting with TAG
    exec 3<>/dev/ttyS1 || return 1
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    printf '%s\n' "$1" >&3
    rig_n=0
    while [ "$rig_n" -lt 8 ]; do
        read -r rig_reply <&3 || break
        case "$rig_reply" in "$2"*) exec 3<&-; return 0 ;; error*) break ;; esac
        rig_n=$((rig_n + 1))
    done
    exec 3<&-
    echo "rig: request '$1': ${{rig_reply:-no answer}}" >&2
    return 1
}}
rig_reset() {{ # resets the machine; the script starts again in the next boot
    sync
    rig_request reset ok || exit {CONTROL_FAILED}
    sleep 60
    echo "rig: asked for a reset, but none came within 60 s" >&2
    exit {CONTROL_FAILED}
}}
rig_request boot 'boot ' || exit {CONTROL_FAILED}
RIG_BOOT=${{rig_reply#boot }}
export RIG_BOOT
echo "rig: boot $RIG_BOOT of {last}"
(
{script}
)
rig_rc=$?
if [ "$rig_rc" -eq 0 ] && [ "$RIG_BOOT" -lt {last} ]; then
    echo "rig: the script ended in boot $RIG_BOOT, before its {resets} reset(s)"
    exit {EARLY_END}
fi
exit "$rig_rc"
"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_prelude_asks_for_the_boot_and_checks_the_last_one() {
        let s = wrap("echo body\nexit 0", 2);
        assert!(s.contains("rig_request boot 'boot '"), "{s}");
        assert!(s.contains("(\necho body\nexit 0\n)\n"), "{s}");
        assert!(s.contains("[ \"$RIG_BOOT\" -lt 3 ]"), "{s}");
        assert!(s.contains("exit 96"), "{s}");
        assert!(s.contains("rig_request reset ok || exit 95"), "{s}");
        // The body runs after the prelude, so it can use both.
        assert!(s.find("rig_reset()").unwrap() < s.find("echo body").unwrap());
        assert!(s.find("export RIG_BOOT").unwrap() < s.find("echo body").unwrap());
    }

    #[test]
    fn the_prelude_is_valid_shell() {
        let s = wrap("case x in x) true ;; esac", 1);
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert!(out.status.success(), "{s}\n{out:?}");
    }
}
