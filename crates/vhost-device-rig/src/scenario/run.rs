// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Running a scenario, phase by phase: prepare the directories, build the
//! initrd, start the backends and wait for their sockets, start QEMU,
//! supervise until something ends, tear everything down.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{read_lossy, Backend, Scenario};
use crate::control::Control;
use crate::cpio::concat_initrd;
use crate::image::GuestImage;
use crate::paths::{resolve_binary, scenario_dir};
use crate::process::{describe_status, spawn_logged, stop_child, GuestLock, Running};
use crate::result::{Outcome, ScenarioResult};
use crate::text::{guest_output, parse_serial, shell_quote, Placeholders};
use crate::Error;

/// How often the rig looks at the serial log and the processes.
const POLL: Duration = Duration::from_millis(50);
/// How long QEMU may take to power off after the guest script ended.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);

/// Why a phase stopped the run early.
enum Stop {
    /// A verdict reached before the guest ran (a backend or QEMU failed).
    Outcome(Outcome),
    /// The rig itself could not go on (a file could not be written).
    Setup(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Setup(e)
    }
}

/// Where a run keeps its files.
struct Dirs {
    /// The scenario's log directory, kept after the run.
    logs: PathBuf,
    /// The short-lived runtime directory (sockets: a unix socket path has
    /// 107 bytes at most).
    run: TempDir,
}

/// A backend with everything resolved and substituted.
struct Plan<'a> {
    backend: &'a Backend,
    index: usize,
    program: PathBuf,
    args: Vec<String>,
    socket: Option<PathBuf>,
}

/// The processes a run started.
#[derive(Default)]
struct Processes {
    backends: Vec<Running>,
    qemu: Option<Child>,
    /// Wall time from QEMU's start to the guest script's start.
    boot_to_script: Option<Duration>,
}

/// The verdict once the guest script printed its exit code.
fn exit_outcome(code: i32) -> Outcome {
    if code == 0 {
        Outcome::Passed
    } else {
        Outcome::GuestFailed { exit_code: code }
    }
}

/// `program args…` with the arguments quoted for a shell, for the logs.
fn command_line(program: &str, args: &[String]) -> String {
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    format!("{program} {}", args.join(" "))
}

impl Scenario {
    pub(super) fn run_inner(&self, started: Instant) -> Result<ScenarioResult, Error> {
        self.check()?;
        let image = match &self.image {
            Some(i) => i.clone(),
            None => GuestImage::locate()?,
        };
        // One guest at a time on this machine, whatever runs the tests: the
        // wait does not count against the scenario's timeout.
        let guest_lock = GuestLock::acquire(&crate::image::cache_dir());
        let started = if guest_lock.is_some() {
            Instant::now()
        } else {
            started
        };
        let dirs = self.prepare()?;
        let initrd = self.initrd(&image, &dirs)?;
        let placeholders = self.placeholders(&dirs);
        // Resolve and substitute everything before starting anything.
        let plans = self.plan_backends(&placeholders)?;
        let qemu_args = placeholders
            .substitute_all(&self.qemu_args)
            .map_err(Error::Config)?;
        let listener = UnixListener::bind(dirs.run.path().join("ctl.sock"))
            .map_err(Error::io("binding the control socket"))?;
        let control = Control::start(
            listener,
            dirs.run.path().join("qmp.sock"),
            dirs.logs.clone(),
            self.resets,
        )?;

        let mut procs = Processes::default();
        let outcome = self
            .start_backends(&plans, &dirs, &mut procs)
            .and_then(|()| self.start_qemu(&image, &initrd, &dirs, &qemu_args, &mut procs))
            .map(|()| self.supervise(&dirs, started, &mut procs));
        let outcome = match outcome {
            Ok(outcome) | Err(Stop::Outcome(outcome)) => outcome,
            Err(Stop::Setup(e)) => {
                teardown(&mut procs, Duration::ZERO);
                let _ = control.finish();
                return Err(e);
            }
        };
        let grace = if matches!(outcome, Outcome::Passed | Outcome::GuestFailed { .. }) {
            POWEROFF_GRACE
        } else {
            Duration::ZERO
        };
        teardown(&mut procs, grace);
        let control = control.finish();

        let serial_log = read_lossy(&dirs.logs.join("serial.log"));
        let state = parse_serial(&serial_log);
        let result = ScenarioResult {
            name: self.name.clone(),
            exit_code: state.exit_code,
            guest_output: guest_output(&serial_log, &state).to_owned(),
            serial_log,
            screendumps: control.screendumps,
            resets: control.resets,
            dir: dirs.logs.clone(),
            duration: started.elapsed(),
            boot_to_script: procs.boot_to_script,
            outcome,
        };
        let _ = std::fs::write(dirs.logs.join("result.txt"), result.report());
        Ok(result)
    }

    /// Phase 1: a clean log directory and a runtime directory.
    fn prepare(&self) -> Result<Dirs, Error> {
        let logs = scenario_dir(&self.name);
        match std::fs::remove_dir_all(&logs) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("clearing the scenario directory")(e)),
        }
        std::fs::create_dir_all(&logs)
            .map_err(Error::io(&format!("creating {}", logs.display())))?;
        let run = tempfile::Builder::new()
            .prefix("vdrig-")
            .tempdir()
            .map_err(Error::io("creating the runtime directory"))?;
        Ok(Dirs { logs, run })
    }

    fn placeholders(&self, dirs: &Dirs) -> Placeholders {
        let run = dirs.run.path();
        Placeholders {
            dir: dirs.logs.to_string_lossy().into_owned(),
            run: run.to_string_lossy().into_owned(),
            sockets: (0..self.backends.len())
                .map(|i| {
                    run.join(format!("vhost-{i}.sock"))
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            own: 0,
        }
    }

    /// Phase 2: the initrd (provisioned base + this scenario's archive) and
    /// the script, kept beside the logs.
    fn initrd(&self, image: &GuestImage, dirs: &Dirs) -> Result<PathBuf, Error> {
        let initrd = dirs.run.path().join("initrd.img");
        let base = std::fs::read(&image.initrd)
            .map_err(Error::io(&format!("reading {}", image.initrd.display())))?;
        let mut extra = Vec::new();
        if self.gl {
            let overlay = image.gl_overlay.as_ref().ok_or_else(|| {
                Error::NotProvisioned(
                    "no GL overlay (VHOST_DEVICE_GUEST_GL_OVERLAY); re-run rust-vmm-ci/guest/provision.sh"
                        .to_owned(),
                )
            })?;
            extra = std::fs::read(overlay)
                .map_err(Error::io(&format!("reading {}", overlay.display())))?;
            // Each archive starts on a 4-byte boundary.
            extra.resize(extra.len().div_ceil(4) * 4, 0);
        }
        extra.extend(self.scenario_cpio(Some(image))?);
        let mut f = File::create(&initrd).map_err(Error::io("writing the initrd"))?;
        concat_initrd(&mut f, &base, &extra).map_err(Error::io("writing the initrd"))?;
        std::fs::write(dirs.logs.join("script.sh"), self.effective_script())
            .map_err(Error::io("writing script.sh"))?;
        Ok(initrd)
    }

    fn plan_backends(&self, placeholders: &Placeholders) -> Result<Vec<Plan<'_>>, Error> {
        self.backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let ph = placeholders.for_backend(index);
                let socket = backend
                    .socket_template(index)
                    .map(|t| ph.substitute(&t))
                    .transpose()
                    .map_err(Error::Config)?
                    .map(PathBuf::from);
                Ok(Plan {
                    backend,
                    index,
                    program: resolve_binary(&backend.program)?,
                    args: ph.substitute_all(&backend.args).map_err(Error::Config)?,
                    socket,
                })
            })
            .collect()
    }

    /// Phase 3: the backends, in order, each with its socket in place
    /// before the next starts.
    fn start_backends(
        &self,
        plans: &[Plan<'_>],
        dirs: &Dirs,
        procs: &mut Processes,
    ) -> Result<(), Stop> {
        for plan in plans {
            let label = plan.backend.label();
            let log_path = dirs
                .logs
                .join(format!("backend-{}-{label}.log", plan.index));
            let mut log = File::create(&log_path).map_err(Error::io("creating a backend log"))?;
            let _ = writeln!(
                log,
                "$ {}",
                command_line(&plan.program.to_string_lossy(), &plan.args)
            );
            let mut cmd = Command::new(&plan.program);
            cmd.args(&plan.args)
                .envs(plan.backend.env.iter().map(|(k, v)| (k, v)));
            let child = spawn_logged(&mut cmd, log).map_err(|e| {
                Stop::Outcome(Outcome::BackendFailed {
                    backend: label.clone(),
                    reason: format!("could not start ({}): {e}", plan.program.display()),
                })
            })?;
            procs.backends.push(Running {
                label: label.clone(),
                child,
            });
            if let (Some(sock), Some(running)) = (&plan.socket, procs.backends.last_mut()) {
                self.wait_for_socket(sock, running)?;
            }
        }
        Ok(())
    }

    /// Phase 4: waits until the backend creates its socket, exits, or runs
    /// out of time.
    fn wait_for_socket(&self, sock: &Path, backend: &mut Running) -> Result<(), Stop> {
        let wait = self.socket_timeout.min(self.timeout);
        let deadline = Instant::now() + wait;
        let failed = |reason| {
            Stop::Outcome(Outcome::BackendFailed {
                backend: backend.label.clone(),
                reason,
            })
        };
        while !sock.exists() {
            if let Ok(Some(status)) = backend.child.try_wait() {
                return Err(failed(format!(
                    "exited early ({}) before creating {}",
                    describe_status(status),
                    sock.display()
                )));
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "did not create {} within {}s",
                    sock.display(),
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Phase 5: QEMU, with its command line kept beside the logs.
    fn start_qemu(
        &self,
        image: &GuestImage,
        initrd: &Path,
        dirs: &Dirs,
        user_args: &[String],
        procs: &mut Processes,
    ) -> Result<(), Stop> {
        let args = self.qemu_command_args(image, initrd, &dirs.logs, dirs.run.path(), user_args);
        let _ = std::fs::write(
            dirs.logs.join("qemu.cmdline"),
            format!(
                "{}\n",
                command_line(&shell_quote(&image.qemu.to_string_lossy()), &args)
            ),
        );
        let qlog =
            File::create(dirs.logs.join("qemu.log")).map_err(Error::io("creating qemu.log"))?;
        let mut cmd = Command::new(&image.qemu);
        cmd.args(&args);
        let child = spawn_logged(&mut cmd, qlog).map_err(|e| {
            Stop::Outcome(Outcome::QemuFailed {
                reason: format!("could not start {}: {e}", image.qemu.display()),
            })
        })?;
        procs.qemu = Some(child);
        Ok(())
    }

    /// Phase 6: watches the serial log and the processes until the guest
    /// script ends, a process exits, or the timeout expires.
    fn supervise(&self, dirs: &Dirs, started: Instant, procs: &mut Processes) -> Outcome {
        let q_start = Instant::now();
        let serial_path = dirs.logs.join("serial.log");
        loop {
            let state = parse_serial(&read_lossy(&serial_path));
            if procs.boot_to_script.is_none() && state.script_started_at.is_some() {
                procs.boot_to_script = Some(q_start.elapsed());
            }
            if let Some(code) = state.exit_code {
                return exit_outcome(code);
            }
            if let Some(outcome) = qemu_exited(procs, &serial_path, &dirs.logs) {
                return outcome;
            }
            if let Some(outcome) = backend_exited(procs, &serial_path) {
                return outcome;
            }
            if started.elapsed() >= self.timeout {
                return Outcome::Timeout {
                    after: self.timeout,
                    script_started: state.script_started_at.is_some(),
                };
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The verdict once a process exited: the guest's own if its end marker
/// landed meanwhile, else what `failed` makes of it (told whether the guest
/// script had started).
fn after_exit(serial_path: &Path, failed: impl FnOnce(bool) -> Outcome) -> Outcome {
    let state = parse_serial(&read_lossy(serial_path));
    match state.exit_code {
        Some(code) => exit_outcome(code),
        None => failed(state.script_started_at.is_some()),
    }
}

/// The verdict if QEMU has exited.
fn qemu_exited(procs: &mut Processes, serial_path: &Path, logs: &Path) -> Option<Outcome> {
    let status = procs.qemu.as_mut()?.try_wait().ok()??;
    Some(after_exit(serial_path, |script_started| {
        let qlog = read_lossy(&logs.join("qemu.log"));
        let last = qlog
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        let when = match script_started {
            true => "while the guest script ran (guest kernel panic or poweroff?)",
            false => "before the guest script started",
        };
        Outcome::QemuFailed {
            reason: format!("exited ({}) {when}{last}", describe_status(status)),
        }
    }))
}

/// The verdict if a backend has exited.
fn backend_exited(procs: &mut Processes, serial_path: &Path) -> Option<Outcome> {
    let (label, status) = procs
        .backends
        .iter_mut()
        .find_map(|r| Some((r.label.clone(), r.child.try_wait().ok()??)))?;
    Some(after_exit(serial_path, |script_started| {
        let when = match script_started {
            true => "script ran",
            false => "booted",
        };
        Outcome::BackendFailed {
            backend: label,
            reason: format!(
                "exited early ({}) while the guest {when}",
                describe_status(status)
            ),
        }
    }))
}

/// Phase 7: QEMU first (given `grace` to finish powering off), then the
/// backends.
fn teardown(procs: &mut Processes, grace: Duration) {
    if let Some(q) = procs.qemu.as_mut() {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(q.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_child(q, Duration::from_millis(500));
    }
    for r in &mut procs.backends {
        stop_child(&mut r.child, Duration::from_secs(3));
    }
}
