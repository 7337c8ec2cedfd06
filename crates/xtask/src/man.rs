// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Man pages from the clap definitions (`cargo xtask man`), so that they
//! cannot disagree with `--help`. A binary with subcommands (gpio's
//! `sim-set`, ...) gets one page per subcommand too, as `git` does.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_mangen::Man;
use roff::{bold, roman, Roff};

use crate::Device;

/// Section 1: user commands.
const SECTION: &str = "1";

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// EXAMPLES: the daemon on host-free backends, and QEMU's options.
fn examples_section(device: &Device) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    roff.text([roman("Serve one guest on host-free backends:")]);
    literal(&mut roff, device.daemon_example);
    roff.text([roman(
        "and run QEMU with the device (guest memory must be shared):",
    )]);
    literal(&mut roff, device.qemu_example);
    roff.control("PP", []);
    roff.text([
        roman("As a systemd service, with the socket on descriptor 3: see "),
        bold(format!("{}@.socket", device.binary)),
        roman(" in FILES."),
    ]);
    roff
}

/// `text` as an indented, unfilled block.
fn literal(roff: &mut Roff, text: &str) {
    roff.control("PP", [])
        .control("RS", ["4"])
        .control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []).control("RE", []);
}

fn files_section(device: &Device) -> Roff {
    let name = device.binary.trim_start_matches("vhost-device-");
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            format!("/usr/share/qemu/vhost-user/50-{}.json", device.binary),
            "the vhost-user descriptor libvirt reads (see --print-capabilities)",
        ),
        (
            format!(
                "/usr/lib/systemd/system/{}@.socket, {}@.service",
                device.binary, device.binary
            ),
            "template units: the socket listens on /run/vhost-device/NAME-INSTANCE.sock",
        ),
        (
            format!("/etc/vhost-device/{name}-INSTANCE.conf"),
            "VHOST_DEVICE_ARGS=..., the device flags of the service instance",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(path)])
            .text([roman(what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", [])
        .text([bold("RUST_LOG")])
        .text([roman("log filter (default info), e.g. RUST_LOG=debug")]);
    roff.control("TP", [])
        .text([bold("LISTEN_FDS, LISTEN_PID")])
        .text([roman(
            "systemd socket activation: --socket-fd must name passed descriptors",
        )]);
    roff
}

fn page(command: &Command, extra: &[Roff]) -> Result<Vec<u8>, String> {
    let man = Man::new(command.clone())
        .section(SECTION)
        .manual("vhost-device")
        .source(format!(
            "{} {}",
            command.get_name(),
            command.get_version().unwrap_or_default()
        ));
    let mut out = Vec::new();
    man.render_title(&mut out).map_err(io)?;
    man.render_name_section(&mut out).map_err(io)?;
    man.render_synopsis_section(&mut out).map_err(io)?;
    man.render_description_section(&mut out).map_err(io)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).map_err(io)?;
    }
    if command.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut out).map_err(io)?;
    }
    if command.get_after_help().is_some() || command.get_after_long_help().is_some() {
        man.render_extra_section(&mut out).map_err(io)?;
    }
    for section in extra {
        section.to_writer(&mut out).map_err(io)?;
    }
    if command.get_version().is_some() {
        man.render_version_section(&mut out).map_err(io)?;
    }
    Ok(out)
}

/// The pages of one device: `(file name, roff text)`, the binary's first.
pub fn pages(device: &Device) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut command = (device.command)();
    command.build();
    let mut pages = vec![(
        format!("{}.{SECTION}", device.binary),
        page(&command, &[examples_section(device), files_section(device)])?,
    )];
    // clap's own `help` subcommand needs no page.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{}-{}", device.binary, sub.get_name());
        // clap names are &'static without its `string` feature; xtask is a
        // short-lived process.
        let sub = sub.clone().name(&*name.clone().leak());
        pages.push((format!("{name}.{SECTION}"), page(&sub, &[])?));
    }
    Ok(pages)
}

/// Writes every device's pages into `dir`; returns the files written.
pub fn generate(devices: &[Device], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for device in devices {
        for (file, text) in pages(device)? {
            let path = dir.join(file);
            let mut f =
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(&text).map_err(io)?;
            written.push(path);
        }
    }
    Ok(written)
}
