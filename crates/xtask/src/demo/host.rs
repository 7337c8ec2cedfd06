// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo's host side: what the host does and sees for each device while
//! the guest runs its script.
//!
//! Live peers (gpio, can, rpmsg, bluetooth) run on threads started before
//! the guest boots: each waits for the daemon's socket (the rig starts the
//! daemons only once it holds the guest lock, which another guest may keep
//! for minutes), plays its part, and returns what it saw. Every wait is
//! bounded, and all of them end when the scenario does. The file checks
//! (i2c's EEPROM file, sound's WAV files, gpu's screendump) are in
//! [`super::files`].

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use vhost_device_can::protocol::{
    virtio_can_rx, virtio_can_tx_out, CONTROL_QUEUE, RX_QUEUE, TX_QUEUE, VIRTIO_CAN_RESULT_OK,
    VIRTIO_CAN_SET_CTRL_MODE_START, VIRTIO_CAN_TX,
};
use vhost_device_common::testing::{FrontendOptions, TestFrontend};
use vhost_device_gpio::control::ControlClient;
use vm_memory::ByteValued;

/// What the host saw of one device, and whether that is what it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saw {
    /// The host's side of the check passed.
    pub ok: bool,
    /// One line for the table.
    pub text: String,
}

impl Saw {
    /// A passed check.
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: text.into(),
        }
    }

    /// A failed check.
    pub fn failed(text: impl Into<String>) -> Self {
        Self {
            ok: false,
            text: text.into(),
        }
    }
}

impl From<Result<String, String>> for Saw {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(t) => Saw::ok(t),
            Err(e) => Saw::failed(e),
        }
    }
}

/// The longest any live peer waits for the guest, once its daemon is up.
const PEER_LIMIT: Duration = Duration::from_secs(150);
/// Bound of one queue request of a host frontend.
const WAIT: Duration = Duration::from_secs(5);

/// Text the host writes at the start of the simulated EEPROM's file.
pub const EEPROM_TEXT: &[u8] = b"vhost-device demo";
/// The byte and offset the guest writes into the EEPROM.
pub const EEPROM_WRITE: (usize, u8) = (0x20, 0x5a);

/// The CAN frame the guest sends and the one the host answers with.
pub const CAN_GUEST_FRAME: (u32, [u8; 4]) = (0x123, [0xde, 0xad, 0xbe, 0xef]);
pub const CAN_HOST_FRAME: (u32, [u8; 3]) = (0x321, [0xc0, 0xff, 0xee]);

/// gpio lines: the host holds `LINE_HOST_HIGH` high, the guest drives
/// `LINE_GUEST_READY` once its monitor on `LINE_EDGE` runs, and then the
/// host raises `LINE_EDGE`.
pub const LINE_HOST_HIGH: u16 = 1;
pub const LINE_GUEST_READY: u16 = 0;
pub const LINE_EDGE: u16 = 2;

/// The address guest `n` of the bluetooth daemon gets (its default
/// `--bdaddr` plus `n`), as it appears in HCI events (little-endian).
fn bt_addr(n: u8) -> [u8; 6] {
    [n, 0, 0xb7, 0, 0x54, 0x52]
}

/// The threads of the live peers, and the flag that ends their waits.
#[derive(Debug)]
pub struct Peers {
    over: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<Saw>)>,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            over: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
}

impl Peers {
    /// Starts `peer` on a thread for `device`; it gets the "scenario over"
    /// flag.
    pub fn spawn(
        &mut self,
        device: &'static str,
        peer: impl FnOnce(&AtomicBool) -> Result<String, String> + Send + 'static,
    ) -> Result<(), String> {
        let over = self.over.clone();
        let handle = thread::Builder::new()
            .name(format!("demo-{device}"))
            .spawn(move || Saw::from(peer(&over)))
            .map_err(|e| format!("starting the {device} peer: {e}"))?;
        self.threads.push((device, handle));
        Ok(())
    }

    /// Ends every wait and collects what each peer saw.
    pub fn finish(self) -> Vec<(&'static str, Saw)> {
        self.over.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|(device, h)| {
                let saw = h
                    .join()
                    .unwrap_or_else(|_| Saw::failed("the host peer panicked"));
                (device, saw)
            })
            .collect()
    }
}

/// Waits for `path` to exist, unless the scenario ends first.
fn wait_for_path(path: &Path, over: &AtomicBool) -> Result<(), String> {
    while !path.exists() {
        if over.load(Ordering::SeqCst) {
            return Err(format!("{} never appeared", path.display()));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Polls `cond` until it holds, for at most [`PEER_LIMIT`] or the end of
/// the scenario.
fn poll_until(
    what: &str,
    over: &AtomicBool,
    mut cond: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + PEER_LIMIT;
    while !cond()? {
        if over.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

// ---- gpio ----------------------------------------------------------------

/// One `key=value` field of a simulated line's `info`.
fn gpio_field(ctl: &mut ControlClient, line: u16, key: &str) -> Result<String, String> {
    let info = ctl.info(line).map_err(|e| e.to_string())?;
    Ok(info
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("")
        .to_owned())
}

/// The simulated chip's control socket: hold a line high, wait for the
/// guest's monitor and its "ready" output, raise the monitored line, and
/// see the interrupt delivered and re-armed.
pub fn gpio_peer(ctl_path: &Path, over: &AtomicBool) -> Result<String, String> {
    wait_for_path(ctl_path, over)?;
    let mut ctl = ControlClient::connect(ctl_path).map_err(|e| e.to_string())?;
    let e = |e: vhost_device_gpio::Error| e.to_string();
    ctl.set(LINE_HOST_HIGH, true).map_err(e)?;
    poll_until("the guest to drive its ready line", over, || {
        Ok(
            gpio_field(&mut ctl, LINE_GUEST_READY, "direction")? == "out"
                && ctl.get(LINE_GUEST_READY).map_err(e)?,
        )
    })?;
    poll_until("the guest's edge monitor", over, || {
        Ok(gpio_field(&mut ctl, LINE_EDGE, "edges")? == "rising"
            && gpio_field(&mut ctl, LINE_EDGE, "armed")? == "1")
    })?;
    ctl.set(LINE_EDGE, true).map_err(e)?;
    poll_until("the edge interrupt to be delivered", over, || {
        Ok(gpio_field(&mut ctl, LINE_EDGE, "fired")? == "1")
    })?;
    Ok(format!(
        "set line {LINE_HOST_HIGH} high; saw the guest drive line {LINE_GUEST_READY}; \
         raised line {LINE_EDGE}: 1 interrupt delivered"
    ))
}

// ---- rpmsg ---------------------------------------------------------------

/// The remote end of the echo channel: every message the guest sends comes
/// back prefixed with `echo: `.
pub fn rpmsg_echo_peer(sock: &Path, over: &AtomicBool) -> Result<String, String> {
    wait_for_path(sock, over)?;
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(|e| e.to_string())?;
    s.connect(&SockAddr::unix(sock).map_err(|e| e.to_string())?)
        .map_err(|e| format!("connecting to {}: {e}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + PEER_LIMIT;
    let mut buf = [0u8; 512];
    let mut echoed = Vec::new();
    while !over.load(Ordering::SeqCst) && Instant::now() < deadline {
        match (&s).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let msg = buf.get(..n).unwrap_or_default();
                s.send(&[b"echo: ", msg].concat())
                    .map_err(|e| e.to_string())?;
                echoed.push(String::from_utf8_lossy(msg).into_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    match echoed.as_slice() {
        [] => Err("no message from the guest on the echo channel".into()),
        msgs => Ok(format!("echoed {msgs:?} on the host channel")),
    }
}

// ---- can -----------------------------------------------------------------

fn can_tx(fe: &mut TestFrontend, id: u32, payload: &[u8]) -> Result<(), String> {
    let len = u16::try_from(payload.len()).map_err(|e| e.to_string())?;
    let mut bytes = virtio_can_tx_out::new(VIRTIO_CAN_TX, 0, id, len)
        .as_slice()
        .to_vec();
    bytes.extend_from_slice(payload);
    let used = fe
        .queue(TX_QUEUE)
        .and_then(|q| q.request(&[&bytes], &[1], WAIT))
        .map_err(|e| e.to_string())?;
    match used.data.first() {
        Some(&VIRTIO_CAN_RESULT_OK) => Ok(()),
        other => Err(format!("TX {id:#x}: result {other:?}")),
    }
}

fn can_post_rx(fe: &mut TestFrontend) -> Result<(), String> {
    let rx = fe.queue(RX_QUEUE).map_err(|e| e.to_string())?;
    rx.add(&[], &[16 + 64]).map_err(|e| e.to_string())?;
    rx.kick().map(|_| ()).map_err(|e| e.to_string())
}

/// A second node on the daemon's virtual bus (the daemon's second socket,
/// driven by the test frontend as a guest would): it sees the guest's
/// frame and answers every one with its own.
pub fn can_peer(sock: &Path, over: &AtomicBool) -> Result<String, String> {
    wait_for_path(sock, over)?;
    let opts = FrontendOptions {
        num_queues: Some(3),
        queue_size: 64,
        ..Default::default()
    };
    let mut fe = TestFrontend::connect_retry(sock, opts, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let start = fe
        .queue(CONTROL_QUEUE)
        .and_then(|q| q.request(&[&VIRTIO_CAN_SET_CTRL_MODE_START.to_le_bytes()], &[1], WAIT))
        .map_err(|e| e.to_string())?;
    if start.data.first() != Some(&VIRTIO_CAN_RESULT_OK) {
        return Err("START of the host's node failed".into());
    }
    for _ in 0..8 {
        can_post_rx(&mut fe)?;
    }
    let deadline = Instant::now() + PEER_LIMIT;
    let mut seen = Vec::new();
    while !over.load(Ordering::SeqCst) && Instant::now() < deadline {
        let Ok(used) = fe
            .queue(RX_QUEUE)
            .and_then(|q| q.wait_used(Duration::from_millis(200)))
        else {
            continue;
        };
        can_post_rx(&mut fe)?;
        let header = used
            .data
            .get(..16)
            .and_then(virtio_can_rx::from_slice)
            .ok_or("short RX buffer")?;
        let id = header.can_id.to_native();
        let payload = used.data.get(16..).unwrap_or_default().to_vec();
        if (id, payload.as_slice()) == (CAN_GUEST_FRAME.0, &CAN_GUEST_FRAME.1[..]) {
            can_tx(&mut fe, CAN_HOST_FRAME.0, &CAN_HOST_FRAME.1)?;
        }
        let frame = format!("{id:03X}#{}", hex(&payload));
        if !seen.contains(&frame) {
            seen.push(frame);
        }
    }
    let want = format!("{:03X}#{}", CAN_GUEST_FRAME.0, hex(&CAN_GUEST_FRAME.1));
    if seen.contains(&want) {
        Ok(format!(
            "its node on the bus got {} from the guest, answered {:03X}#{}",
            seen.join(" "),
            CAN_HOST_FRAME.0,
            hex(&CAN_HOST_FRAME.1)
        ))
    } else {
        Err(format!("no {want} on the bus (saw {seen:?})"))
    }
}

/// `DEADBEEF`-style hex, as cansend and candump write payloads.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

// ---- bluetooth -----------------------------------------------------------

/// The host's controller on the daemon's simulated radio (its second
/// guest, driven by the test frontend as Linux's driver would).
struct Hci {
    fe: TestFrontend,
}

impl Hci {
    fn post_rx(&mut self) -> Result<(), String> {
        let rx = self.fe.queue(1).map_err(|e| e.to_string())?;
        rx.add(&[], &[1000]).map_err(|e| e.to_string())?;
        rx.kick().map(|_| ()).map_err(|e| e.to_string())
    }

    fn command(&mut self, opcode: u16, params: &[u8]) -> Result<(), String> {
        let len = u8::try_from(params.len()).map_err(|e| e.to_string())?;
        let mut packet = vec![1];
        packet.extend(opcode.to_le_bytes());
        packet.push(len);
        packet.extend_from_slice(params);
        self.fe
            .queue(0)
            .and_then(|q| q.request(&[&packet], &[], WAIT))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The next event within `limit`, if any.
    fn event(&mut self, limit: Duration) -> Result<Option<Vec<u8>>, String> {
        let used = match self.fe.queue(1).and_then(|q| q.wait_used(limit)) {
            Ok(u) => u,
            Err(_) => return Ok(None),
        };
        self.post_rx()?;
        Ok(Some(used.data))
    }

    /// A command whose Command Complete must report success.
    fn command_ok(&mut self, opcode: u16, params: &[u8]) -> Result<(), String> {
        self.command(opcode, params)?;
        let e = self
            .event(WAIT)?
            .ok_or(format!("no reply to {opcode:#06x}"))?;
        match e.get(..7) {
            Some([4, 0x0e, _, _, lo, hi, 0]) if u16::from_le_bytes([*lo, *hi]) == opcode => Ok(()),
            _ => Err(format!("{opcode:#06x} failed: {e:02x?}")),
        }
    }
}

/// The host's controller: discoverable and connectable so the guest's
/// inquiry finds it, and inquiring itself until it finds the guest.
pub fn bluetooth_peer(sock: &Path, over: &AtomicBool) -> Result<String, String> {
    wait_for_path(sock, over)?;
    let opts = FrontendOptions {
        num_queues: Some(2),
        ..Default::default()
    };
    let fe = TestFrontend::connect_retry(sock, opts, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut hci = Hci { fe };
    hci.post_rx()?;
    hci.command_ok(0x0c03, &[])?; // Reset
    hci.command_ok(0x0c1a, &[3])?; // Write Scan Enable: inquiry + page
    let deadline = Instant::now() + PEER_LIMIT;
    let guest = bt_addr(0);
    let mut inquiries = 0u32;
    while !over.load(Ordering::SeqCst) && Instant::now() < deadline {
        // Inquiry, GIAC, 5 s at most, up to 4 responses.
        hci.command(0x0401, &[0x33, 0x8b, 0x9e, 4, 4])?;
        inquiries += 1;
        let mut found = false;
        while let Some(e) = hci.event(Duration::from_secs(6))? {
            match e.get(1) {
                // Inquiry Result: count, then the first address.
                Some(0x02) if e.get(4..10) == Some(&guest[..]) => found = true,
                Some(0x01) => break,
                _ => {}
            }
        }
        if found {
            return Ok(format!(
                "its controller 52:54:00:B7:00:01 (inquiry and page scan on); \
                 its inquiry #{inquiries} found the guest's 52:54:00:B7:00:00"
            ));
        }
        thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "{inquiries} inquiries never found the guest's controller"
    ))
}
