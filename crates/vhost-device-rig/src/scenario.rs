// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Scenarios: backends + QEMU + a guest script, run to a verdict.

mod reboot;
mod run;

pub use reboot::{CONTROL_FAILED, EARLY_END};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cpio::CpioWriter;
use crate::image::GuestImage;
use crate::result::print_line;
pub use crate::result::{Outcome, ScenarioResult};
use crate::text::{shell_quote, valid_scenario_name};
use crate::{Error, IN_GUEST_ENV};

/// One vhost-user backend process of a scenario.
#[derive(Debug, Clone)]
pub struct Backend {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    socket: SocketWait,
}

#[derive(Debug, Clone)]
enum SocketWait {
    /// Wait for this backend's `{sock}` if its arguments mention it.
    Default,
    /// Wait for this path (a template with placeholders).
    Path(String),
    /// Do not wait.
    None,
}

impl Backend {
    /// A backend running `program`: a path, or the bare name of a binary of
    /// this workspace (found in the target directory, see
    /// [`crate::paths::resolve_binary`]).
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_string_lossy().into_owned(),
            args: Vec::new(),
            env: Vec::new(),
            socket: SocketWait::Default,
        }
    }

    /// Appends arguments. `{sock}` is this backend's socket path, `{sockN}`
    /// backend N's, `{dir}` the log directory, `{run}` the runtime directory.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the backend (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Waits for `path` (placeholders allowed) to exist before QEMU starts,
    /// instead of `{sock}`: for a backend that names its sockets itself, e.g.
    /// `{sock}0` with `--socket-count`.
    pub fn wait_for_socket(mut self, path: &str) -> Self {
        self.socket = SocketWait::Path(path.to_owned());
        self
    }

    /// Starts QEMU without waiting for a socket of this backend.
    pub fn no_socket_wait(mut self) -> Self {
        self.socket = SocketWait::None;
        self
    }

    fn label(&self) -> String {
        Path::new(&self.program).file_name().map_or_else(
            || self.program.clone(),
            |f| f.to_string_lossy().into_owned(),
        )
    }

    fn socket_template(&self, index: usize) -> Option<String> {
        match &self.socket {
            SocketWait::Path(p) => Some(p.clone()),
            SocketWait::None => None,
            SocketWait::Default => {
                let own = format!("{{sock{index}}}");
                self.args
                    .iter()
                    .any(|a| a.contains("{sock}") || a.contains(&own))
                    .then_some(own)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct HostTest {
    exe: PathBuf,
    test: String,
}

/// A guest scenario: what to run on the host, what QEMU gets, and the script
/// the guest's `/init` runs. Build one, then [`Scenario::run`] it.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    backends: Vec<Backend>,
    qemu_args: Vec<String>,
    script: String,
    timeout: Duration,
    socket_timeout: Duration,
    memory_mb: u32,
    modules: Vec<String>,
    files: Vec<(PathBuf, String)>,
    guest_env: Vec<(String, String)>,
    kernel_args: Vec<String>,
    host_test: Option<HostTest>,
    image: Option<GuestImage>,
    expect_failure: bool,
    resets: u32,
    gl: bool,
}

impl Scenario {
    /// A scenario named `name` (letters, digits, `-`, `_`, `.`): its logs go to
    /// `target/guest-rig/<name>/`. Defaults: no backend, a guest script that
    /// exits 0, a 60 s timeout, 512 MiB of guest memory.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            backends: Vec::new(),
            qemu_args: Vec::new(),
            script: "exit 0\n".to_owned(),
            timeout: Duration::from_secs(60),
            socket_timeout: Duration::from_secs(10),
            memory_mb: 512,
            modules: Vec::new(),
            files: Vec::new(),
            guest_env: Vec::new(),
            kernel_args: Vec::new(),
            host_test: None,
            image: None,
            expect_failure: false,
            resets: 0,
            gl: false,
        }
    }

    /// Host-kernel mode: runs the test `test` of the test executable `exe`
    /// (usually `std::env::current_exe()`) inside the guest, with
    /// `VHOST_DEVICE_IN_GUEST=1` set, after loading [`Self::modules`] and
    /// running [`Self::guest_script`] as setup. It passes when that test
    /// passes (an exact filter that matches no test fails).
    pub fn host_test(name: &str, exe: impl AsRef<Path>, test: &str) -> Self {
        let mut s = Self::new(name);
        s.script = String::new();
        s.host_test = Some(HostTest {
            exe: exe.as_ref().to_path_buf(),
            test: test.to_owned(),
        });
        s
    }

    /// Adds a backend started before QEMU: `program` is a path (e.g.
    /// `env!("CARGO_BIN_EXE_vhost-device-i2c")`) or a workspace binary name.
    pub fn backend<S: AsRef<str>>(self, program: impl AsRef<Path>, args: &[S]) -> Self {
        self.backend_with(Backend::new(program).args(args))
    }

    /// Adds a configured [`Backend`].
    pub fn backend_with(mut self, backend: Backend) -> Self {
        self.backends.push(backend);
        self
    }

    /// Appends QEMU arguments (device and chardev options). `{sock}` is
    /// backend 0's socket, `{sockN}` backend N's, `{dir}`/`{run}` as for
    /// backends.
    pub fn qemu_args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.qemu_args
            .extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The shell script the guest runs (with `/bin/sh`, which is dash: real
    /// tools from `/usr/bin` come first in `PATH`). In host-kernel mode it
    /// runs first, as setup, under `set -e`.
    pub fn guest_script(mut self, script: &str) -> Self {
        self.script = script.to_owned();
        self
    }

    /// Kills everything and reports a timeout after `timeout` (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long each backend may take to create its socket (default 10 s).
    pub fn socket_timeout(mut self, timeout: Duration) -> Self {
        self.socket_timeout = timeout;
        self
    }

    /// Guest memory in MiB (default 512), shared memfd memory as vhost-user
    /// needs.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Kernel modules the guest loads before the script, each
    /// `"name [param=value ...]"`, e.g. `"i2c-stub chip_addr=0x50"`. If one
    /// fails to load the scenario fails with exit code 125.
    pub fn modules<S: AsRef<str>>(mut self, modules: &[S]) -> Self {
        self.modules
            .extend(modules.iter().map(|m| m.as_ref().to_owned()));
        self
    }

    /// Copies a host file into the guest at `guest_path` (executable).
    pub fn guest_file(mut self, host: impl AsRef<Path>, guest_path: &str) -> Self {
        self.files
            .push((host.as_ref().to_path_buf(), guest_path.to_owned()));
        self
    }

    /// Exports an environment variable to the guest script.
    pub fn guest_env(mut self, key: &str, value: &str) -> Self {
        self.guest_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends guest kernel command-line arguments.
    pub fn kernel_args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.kernel_args
            .extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Marks a scenario that tests a failure path: its one-line report says
    /// `failed as expected` instead of `FAILED` (the result is unchanged).
    pub fn expecting_failure(mut self) -> Self {
        self.expect_failure = true;
        self
    }

    /// Lets the guest script reset the machine up to `resets` times, and
    /// requires that it does: the script runs again in each boot, with
    /// `RIG_BOOT` set to 1, 2, … (asked from the rig when the script starts),
    /// and calls `rig_reset` to have the rig reset the machine through QMP
    /// `system_reset`, as the reset button would (the devices are reset, the
    /// backends keep their connections). The scenario passes only if the
    /// script exits 0 in boot `resets + 1`; exiting 0 earlier fails it with
    /// [`EARLY_END`], a refused or failed reset with [`CONTROL_FAILED`].
    /// A guest `reboot` or panic still ends QEMU. Give the scenario a timeout
    /// for every boot.
    pub fn resets(mut self, resets: u32) -> Self {
        self.resets = resets;
        self
    }

    /// Boots with the GL overlay appended to the base initramfs: Mesa's
    /// EGL/GBM/GLES stack with its virgl driver, and `rig-gltri` (see
    /// `rust-vmm-ci/guest/gl/`). It is about 200 MB once unpacked, so give
    /// such a scenario about 1 GiB of memory ([`Self::memory_mb`]). A guest
    /// provisioned without the overlay is a setup error, never a pass.
    pub fn gl(mut self) -> Self {
        self.gl = true;
        self
    }

    /// Uses this guest instead of the provisioned one.
    pub fn image(mut self, image: GuestImage) -> Self {
        self.image = Some(image);
        self
    }

    /// The guest script as `/init` will run it (host-kernel wrapping included).
    pub fn effective_script(&self) -> String {
        let script = self.host_script();
        match self.resets {
            0 => script,
            n => reboot::wrap(&script, n),
        }
    }

    fn host_script(&self) -> String {
        let Some(ht) = &self.host_test else {
            return self.script.clone();
        };
        let exe = guest_exe_path(&ht.exe);
        let mut s = String::new();
        if !self.script.trim().is_empty() {
            s.push_str("( set -e\n");
            s.push_str(&self.script);
            s.push_str("\n) || { echo \"rig: host-test setup failed\"; exit 98; }\n");
        }
        s.push_str(&format!(
            "{{ {IN_GUEST_ENV}=1 RUST_BACKTRACE=1 LD_LIBRARY_PATH=/rig/lib {exe} --exact {test} --include-ignored \
             --nocapture --test-threads=1; echo $? >/tmp/rig-test.rc; }} 2>&1 | tee /tmp/rig-test.out\n\
             rc=$(cat /tmp/rig-test.rc)\n\
             [ \"$rc\" -eq 0 ] || exit \"$rc\"\n\
             grep -Eq 'test result: ok\\. [1-9][0-9]* passed' /tmp/rig-test.out || \
             {{ echo \"rig: no test named {test} ran in the guest\"; exit 97; }}\n",
            exe = shell_quote(&exe),
            test = shell_quote(&ht.test),
        ));
        s
    }

    /// Shared libraries of `exe` (per the host's `ldd`) that the guest's
    /// initramfs lacks, per the list provisioning wrote next to it.
    fn missing_libs(exe: &Path, image: &GuestImage) -> Vec<PathBuf> {
        let Some(list) = image.initrd.parent().map(|d| d.join("initramfs-libs.txt")) else {
            return Vec::new();
        };
        let Ok(have) = std::fs::read_to_string(list) else {
            return Vec::new();
        };
        let Ok(out) = Command::new("ldd").arg(exe).output() else {
            return Vec::new();
        };
        missing_from_ldd(&String::from_utf8_lossy(&out.stdout), &have)
    }

    fn scenario_cpio(&self, image: Option<&GuestImage>) -> Result<Vec<u8>, Error> {
        let mut w = CpioWriter::new();
        let io = Error::io("scenario archive");
        w.file("rig/script.sh", 0o755, self.effective_script().as_bytes())
            .map_err(&io)?;
        if !self.modules.is_empty() {
            w.file(
                "rig/modules",
                0o644,
                (self.modules.join("\n") + "\n").as_bytes(),
            )
            .map_err(&io)?;
        }
        if !self.guest_env.is_empty() {
            let env: String = self
                .guest_env
                .iter()
                .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
                .collect();
            w.file("rig/env", 0o644, env.as_bytes()).map_err(&io)?;
        }
        let mut files = self.files.clone();
        if let Some(ht) = &self.host_test {
            files.push((ht.exe.clone(), guest_exe_path(&ht.exe)));
            if let Some(image) = image {
                for lib in Self::missing_libs(&ht.exe, image) {
                    if let Some(name) = lib.file_name() {
                        let guest = format!("/rig/lib/{}", name.to_string_lossy());
                        files.push((lib, guest));
                    }
                }
            }
        }
        for (host, guest) in &files {
            let data = std::fs::read(host).map_err(Error::io(&format!(
                "reading {} for the guest",
                host.display()
            )))?;
            w.file(guest, 0o755, &data).map_err(&io)?;
        }
        w.finish().map_err(io)
    }

    fn check(&self) -> Result<(), Error> {
        if !valid_scenario_name(&self.name) {
            return Err(Error::Config(format!(
                "bad scenario name {:?} (letters, digits, - _ . only)",
                self.name
            )));
        }
        for (k, _) in &self.guest_env {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::Config(format!("bad guest environment name {k:?}")));
            }
        }
        if self.memory_mb < 64 {
            return Err(Error::Config("guest memory below 64 MiB".into()));
        }
        Ok(())
    }

    /// Runs the scenario and prints one line `rig: <name> ... ok|FAILED (...) in Ns`.
    ///
    /// A run that reaches a verdict returns `Ok` whatever the verdict: check
    /// [`ScenarioResult::passed`] or call [`ScenarioResult::assert_success`].
    ///
    /// # Errors
    /// When the scenario cannot even start: the guest is not provisioned, a
    /// backend binary is missing, a placeholder is unknown, or files cannot be
    /// written. Such a scenario must fail, never pass.
    pub fn run(self) -> Result<ScenarioResult, Error> {
        let started = Instant::now();
        match self.run_inner(started) {
            Ok(result) => {
                let boot = result
                    .boot_to_script
                    .map(|b| format!(" (boot to script {:.1}s)", b.as_secs_f64()))
                    .unwrap_or_default();
                let verdict = if result.passed() {
                    "ok".to_owned()
                } else if self.expect_failure {
                    format!("failed as expected ({})", result.outcome)
                } else {
                    format!(
                        "FAILED ({}; logs in {})",
                        result.outcome,
                        result.dir.display()
                    )
                };
                print_line(&self.name, &verdict, result.duration, &boot);
                Ok(result)
            }
            Err(e) => {
                print_line(
                    &self.name,
                    &format!(
                        "{} (setup: {e})",
                        if self.expect_failure {
                            "failed as expected"
                        } else {
                            "FAILED"
                        }
                    ),
                    started.elapsed(),
                    "",
                );
                Err(e)
            }
        }
    }

    fn qemu_command_args(
        &self,
        image: &GuestImage,
        initrd: &Path,
        dir: &Path,
        run: &Path,
        user: &[String],
    ) -> Vec<String> {
        let accel = std::env::var("VHOST_DEVICE_RIG_ACCEL").unwrap_or_else(|_| image.accel.clone());
        let (accel, cpu) = if accel == "kvm" {
            ("kvm", "host")
        } else {
            ("tcg", "max")
        };
        let mem = self.memory_mb;
        let mut cmdline = vec![
            "console=ttyS0".to_owned(),
            "quiet".to_owned(),
            "loglevel=4".to_owned(),
            "panic=-1".to_owned(),
            // Under TCG on a loaded host the kernel's check that the IO-APIC
            // routes the timer can miss its window, and it panics ("IO-APIC +
            // timer doesn't work") before userspace: a failure of the host's
            // load, not of the scenario. VMs routinely skip the check.
            "no_timer_check".to_owned(),
            "rdinit=/init".to_owned(),
        ];
        cmdline.extend(self.kernel_args.iter().cloned());
        let mut args: Vec<String> = [
            "-nodefaults",
            "-no-user-config",
            "-name",
            &format!("vdrig-{}", self.name),
            "-machine",
            "q35,memory-backend=mem",
            "-accel",
            accel,
            "-cpu",
            cpu,
            "-m",
            &format!("{mem}M"),
            "-object",
            &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
            "-kernel",
            &image.kernel.to_string_lossy(),
            "-initrd",
            &initrd.to_string_lossy(),
            "-append",
            &cmdline.join(" "),
            "-display",
            "none",
            "-chardev",
            &format!("file,id=rigser,path={}", dir.join("serial.log").display()),
            "-serial",
            "chardev:rigser",
            "-chardev",
            &format!("socket,id=rigctl,path={}", run.join("ctl.sock").display()),
            "-serial",
            "chardev:rigctl",
            "-qmp",
            &format!("unix:{},server=on,wait=off", run.join("qmp.sock").display()),
            "-no-reboot",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // qboot starts a guest faster than SeaBIOS; VHOST_DEVICE_RIG_BIOS=seabios
        // (or a firmware file name) overrides it.
        match std::env::var("VHOST_DEVICE_RIG_BIOS").as_deref() {
            Ok("seabios") => {}
            Ok(bios) if !bios.is_empty() => args.extend(["-bios".to_owned(), bios.to_owned()]),
            _ => args.extend(["-bios".to_owned(), "qboot.rom".to_owned()]),
        }
        args.extend(user.iter().cloned());
        args
    }
}

/// The libraries in `ldd` output whose file names are not in `have` (one
/// name per line). The loader and the vDSO are never shipped.
fn missing_from_ldd(ldd: &str, have: &str) -> Vec<PathBuf> {
    let have: std::collections::HashSet<&str> = have.lines().map(str::trim).collect();
    ldd.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let path = rest.split_whitespace().next()?;
            (path.starts_with('/') && !have.contains(name.trim())).then(|| PathBuf::from(path))
        })
        .filter(|p| {
            !p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("ld-linux"))
        })
        .collect()
}

fn guest_exe_path(exe: &Path) -> String {
    let name = exe
        .file_name()
        .map_or_else(|| "test".to_owned(), |f| f.to_string_lossy().into_owned());
    format!("/rig/bin/{name}")
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn default_socket_wait_follows_the_arguments() {
        let b = Backend::new("x").args(&["--socket-path", "{sock}"]);
        assert_eq!(b.socket_template(2).as_deref(), Some("{sock2}"));
        let b = Backend::new("x").args(&["--socket-path={sock1}"]);
        assert_eq!(b.socket_template(1).as_deref(), Some("{sock1}"));
        let b = Backend::new("x").args(&["--quiet"]);
        assert_eq!(b.socket_template(0), None);
        let b = Backend::new("x")
            .args(&["-s", "{sock}"])
            .wait_for_socket("{sock}0");
        assert_eq!(b.socket_template(0).as_deref(), Some("{sock}0"));
        let b = Backend::new("x").args(&["-s", "{sock}"]).no_socket_wait();
        assert_eq!(b.socket_template(0), None);
        assert_eq!(
            Backend::new("/a/b/vhost-device-i2c").label(),
            "vhost-device-i2c"
        );
    }

    #[test]
    fn host_test_script_checks_that_a_test_ran() {
        let s = Scenario::host_test("h", "/t/deps/rig-abc", "host_kernel_x")
            .guest_script("ip link add vcan0 type vcan");
        let script = s.effective_script();
        assert!(
            script.contains("( set -e\nip link add vcan0 type vcan\n)"),
            "{script}"
        );
        assert!(script.contains("VHOST_DEVICE_IN_GUEST=1"));
        assert!(script.contains("/rig/bin/rig-abc --exact host_kernel_x --include-ignored"));
        assert!(script.contains("exit 97"));
        let plain = Scenario::new("p").guest_script("true");
        assert_eq!(plain.effective_script(), "true");
    }

    #[test]
    fn scenario_archive_carries_script_modules_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tool");
        std::fs::write(&f, b"BINARY").unwrap();
        let s = Scenario::new("a")
            .guest_script("echo hi")
            .modules(&["vcan", "i2c-stub chip_addr=0x50"])
            .guest_env("X", "a b")
            .guest_file(&f, "/usr/local/bin/tool");
        let bytes = s.scenario_cpio(None).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in [
            "rig/script.sh",
            "echo hi",
            "rig/modules",
            "vcan\ni2c-stub chip_addr=0x50\n",
            "rig/env",
            "export X='a b'",
            "usr/local/bin/tool",
            "BINARY",
            "TRAILER!!!",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn only_missing_libraries_are_shipped() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibasound.so.2 => /lib/x86_64-linux-gnu/libasound.so.2 (0x1)\n\
                   \tlibpipewire-0.3.so.0 => /lib/x86_64-linux-gnu/libpipewire-0.3.so.0 (0x2)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x3)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x4)\n\
                   \tlibgone.so.1 => not found\n";
        let have = "libc.so.6\nlibasound.so.2\nld-linux-x86-64.so.2\n";
        assert_eq!(
            missing_from_ldd(ldd, have),
            [PathBuf::from("/lib/x86_64-linux-gnu/libpipewire-0.3.so.0")]
        );
    }

    #[test]
    fn bad_configuration_is_rejected() {
        Scenario::new("a/b").check().unwrap_err();
        Scenario::new("ok")
            .guest_env("A-B", "x")
            .check()
            .unwrap_err();
        Scenario::new("ok").memory_mb(16).check().unwrap_err();
        Scenario::new("ok").check().unwrap();
    }

    #[test]
    fn qemu_command_has_the_rig_plumbing() {
        let image = GuestImage {
            qemu: "/q".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            kernel_release: String::new(),
            accel: "tcg".into(),
            root: "/r".into(),
            gl_overlay: None,
        };
        let s = Scenario::new("n").memory_mb(256);
        let args = s
            .qemu_command_args(
                &image,
                Path::new("/r/i.img"),
                Path::new("/d"),
                Path::new("/r"),
                &["-device".into(), "x".into()],
            )
            .join(" ");
        for needle in [
            "-machine q35,memory-backend=mem",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-m 256M",
            "-initrd /r/i.img",
            "path=/d/serial.log",
            "path=/r/ctl.sock",
            "unix:/r/qmp.sock,server=on,wait=off",
            "-no-reboot",
            "-display none",
        ] {
            assert!(args.contains(needle), "missing {needle} in {args}");
        }
        assert!(args.ends_with("-device x"));
    }

    #[test]
    fn outcome_wording_names_the_failing_part() {
        assert_eq!(Outcome::Passed.to_string(), "ok");
        assert!(Outcome::GuestFailed { exit_code: 1 }
            .to_string()
            .starts_with("guest:"));
        let t = Outcome::Timeout {
            after: Duration::from_secs(5),
            script_started: false,
        };
        assert!(t.to_string().starts_with("timeout:"));
        assert!(t.to_string().contains("never reached"));
        let b = Outcome::BackendFailed {
            backend: "x".into(),
            reason: "exited".into(),
        };
        assert_eq!(b.category(), "backend");
        assert!(Outcome::QemuFailed { reason: "r".into() }
            .to_string()
            .starts_with("qemu:"));
    }

    #[test]
    fn missing_provisioning_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = GuestImage::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::NotProvisioned(_)));
    }
}
