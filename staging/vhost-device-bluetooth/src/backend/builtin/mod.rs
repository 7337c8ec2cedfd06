// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A controller inside the daemon: enough BR/EDR and LE for Linux to bring
//! it up and for guests to find each other.
//!
//! It answers the init sequence Linux runs on `hciconfig hci0 up` (Reset,
//! the version, feature, command and buffer reads, the event masks and the
//! BR/EDR and LE setup in `hci_init1_sync` … `hci_init4_sync`), keeps what
//! the guest writes (name, class, scan enable, advertising), and simulates
//! inquiry, remote name requests and LE scanning on the [`radio::Radio`]
//! that all built-in controllers of one daemon share. It has no
//! connections: ACL, SCO and ISO packets from the guest are dropped.
//! Event masks are kept but not applied: every event it sends is one Linux
//! enables.

pub mod radio;
pub mod tables;

use std::collections::HashMap;
use std::sync::Arc;
use vhost_device_common::IoError;

use vhost_device_common::{EventRegistry, EventSet, RateLimited};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use self::radio::{Advertising, BdAddr, Presence, Radio, StationHandle};
use self::tables::{Len, HCI_VERSION, MANUFACTURER};
use super::HciBackend;
use crate::error::{Error, Result};
use crate::packet::{Kind, Packet};
use crate::protocol::{evt, op};
use crate::rx::Rx;

/// The token of the radio's wake-up eventfd.
const WAKE: u16 = 0;
/// Length of a local name (Core Vol 4 Part E §7.3.11).
pub const NAME_LEN: usize = 248;
/// The signal strength scan reports carry, in dBm.
const RSSI: i8 = -40;

/// Who a built-in controller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Its public address, wire order.
    pub addr: BdAddr,
    /// Its local name after Reset.
    pub name: String,
}

/// An LE scan in progress.
#[derive(Debug, Default)]
struct Scan {
    active: bool,
    /// Advertisers reported, with the generation reported.
    seen: HashMap<u64, u64>,
}

/// The built-in controller of one guest.
#[derive(Debug)]
pub struct Builtin {
    identity: Identity,
    name: [u8; NAME_LEN],
    kept: HashMap<u16, Vec<u8>>,
    advertising: bool,
    scan: Option<Scan>,
    station: StationHandle,
    wake: Arc<EventFd>,
    registry: Option<EventRegistry>,
    log: RateLimited,
}

/// How a command is answered.
#[allow(clippy::large_enum_variant)] // the reply inline: no allocation per command
enum Reply {
    /// This Command Complete, with status 0.
    Complete(Packet),
    /// Command Status, then these events.
    Status(Vec<Packet>),
}

impl Builtin {
    /// A controller on `radio`.
    pub fn new(radio: &Arc<Radio>, identity: Identity) -> Result<Self> {
        let wake = Arc::new(
            EventFd::new(EFD_NONBLOCK).map_err(|e| IoError::new("creating an eventfd", e))?,
        );
        let station = radio.join(Presence::default(), wake.clone());
        let mut controller = Builtin {
            identity,
            name: [0; NAME_LEN],
            kept: HashMap::new(),
            advertising: false,
            scan: None,
            station,
            wake,
            registry: None,
            log: RateLimited::default(),
        };
        controller.reset_state();
        Ok(controller)
    }

    /// The name as the guest set it, without padding.
    pub fn name(&self) -> &[u8] {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        self.name.get(..end).unwrap_or_default()
    }

    fn reset_state(&mut self) {
        self.name = [0; NAME_LEN];
        for (dst, src) in self.name.iter_mut().zip(self.identity.name.bytes()) {
            *dst = src;
        }
        self.kept.clear();
        self.advertising = false;
        self.stop_scan();
        self.publish();
    }

    fn kept(&self, write_opcode: u16) -> &[u8] {
        match self.kept.get(&write_opcode) {
            Some(value) => value,
            None => tables::kept_by_write(write_opcode).map_or(&[], |(_, d)| d),
        }
    }

    /// Tells the radio what others can see of this controller now.
    fn publish(&self) {
        let scan_enable = self
            .kept(op::WRITE_SCAN_ENABLE)
            .first()
            .copied()
            .unwrap_or(0);
        let mut class = [0; 3];
        class.copy_from_slice(
            self.kept(op::WRITE_CLASS_OF_DEV)
                .get(..3)
                .unwrap_or(&[0; 3]),
        );
        let advertising = self.advertising.then(|| self.advertising_now());
        self.station.update(|p| {
            p.addr = self.identity.addr;
            p.name = self.name.to_vec();
            p.class = class;
            p.scan_enable = scan_enable;
            p.advertising = advertising;
        });
    }

    fn advertising_now(&self) -> Advertising {
        let params = self.kept(op::LE_SET_ADV_PARAM);
        let adv_type = params.get(4).copied().unwrap_or(0);
        let own_type = params.get(5).copied().unwrap_or(0);
        let event_type = match adv_type {
            1 | 4 => 1,
            2 => 2,
            3 => 3,
            _ => 0,
        };
        let (addr_type, addr) = if own_type & 1 == 1 {
            let mut random = [0; 6];
            random.copy_from_slice(
                self.kept(op::LE_SET_RANDOM_ADDR)
                    .get(..6)
                    .unwrap_or(&[0; 6]),
            );
            (1, random)
        } else {
            (0, self.identity.addr)
        };
        let data = |opcode| {
            let kept = self.kept(opcode);
            let len = usize::from(kept.first().copied().unwrap_or(0)).min(31);
            kept.get(1..1 + len).unwrap_or_default().to_vec()
        };
        Advertising {
            event_type,
            addr_type,
            addr,
            data: data(op::LE_SET_ADV_DATA),
            scan_rsp: data(op::LE_SET_SCAN_RSP_DATA),
        }
    }

    fn stop_scan(&mut self) {
        self.scan = None;
        self.station.set_scanning(false);
    }

    /// Reports advertisers not reported yet in this scan.
    fn report_advertisers(&mut self, rx: &mut Rx) {
        let Some(scan) = &mut self.scan else { return };
        for (id, generation, adv) in self.station.advertisers() {
            if scan.seen.get(&id) == Some(&generation) {
                continue;
            }
            if !rx.reserve() {
                // Looked at again from resume().
                return;
            }
            scan.seen.insert(id, generation);
            rx.push(advertising_report(adv.event_type, &adv, &adv.data));
            let scannable = matches!(adv.event_type, 0 | 2);
            if scan.active && scannable && rx.has_room() {
                // SCAN_RSP (event type 4).
                rx.push(advertising_report(4, &adv, &adv.scan_rsp));
            }
        }
    }

    /// Runs one command.
    fn execute(&mut self, opcode: u16, params: &[u8], rx: &mut Rx) -> Result<Reply> {
        let complete = |v: &[u8]| completed(opcode, v);
        match opcode {
            op::RESET => {
                self.reset_state();
                complete(&[])
            }
            op::INQUIRY => self.inquiry(params),
            op::REMOTE_NAME_REQ => self.remote_name(params),
            op::INQUIRY_CANCEL => complete(&[]),
            op::REMOTE_NAME_REQ_CANCEL => complete(exact(opcode, params, 6)?),
            op::READ_LOCAL_VERSION => {
                let mut v = vec![HCI_VERSION, 0, 0, HCI_VERSION];
                v.extend(MANUFACTURER.to_le_bytes());
                v.extend([0, 0]);
                complete(&v)
            }
            op::READ_LOCAL_COMMANDS => complete(&tables::supported_commands()),
            op::READ_LOCAL_FEATURES => complete(&tables::LMP_FEATURES),
            op::READ_BUFFER_SIZE => {
                let mut v = tables::ACL_MTU.to_le_bytes().to_vec();
                v.push(0);
                v.extend(tables::ACL_PKTS.to_le_bytes());
                v.extend([0, 0]);
                complete(&v)
            }
            op::READ_BD_ADDR => complete(&self.identity.addr),
            op::READ_LOCAL_NAME => complete(&self.name),
            op::WRITE_LOCAL_NAME => {
                self.name.copy_from_slice(exact(opcode, params, NAME_LEN)?);
                self.publish();
                complete(&[])
            }
            op::READ_NUM_SUPPORTED_IAC => complete(&[1]),
            op::LE_READ_BUFFER_SIZE => {
                let mut v = tables::LE_ACL_MTU.to_le_bytes().to_vec();
                v.push(tables::LE_ACL_PKTS);
                complete(&v)
            }
            op::LE_READ_LOCAL_FEATURES => complete(&tables::LE_FEATURES),
            op::LE_READ_SUPPORTED_STATES => complete(&tables::LE_STATES),
            op::LE_READ_ADV_TX_POWER => complete(&[0]),
            op::LE_READ_ACCEPT_LIST_SIZE => complete(&[0]),
            op::LE_CLEAR_ACCEPT_LIST => complete(&[]),
            op::LE_SET_ADV_ENABLE => {
                let on = exact(opcode, params, 1)?.first() == Some(&1);
                self.advertising = on;
                self.publish();
                complete(&[])
            }
            op::LE_SET_SCAN_ENABLE => {
                let on = exact(opcode, params, 2)?.first() == Some(&1);
                if on {
                    let active = self.kept(op::LE_SET_SCAN_PARAM).first() == Some(&1);
                    self.scan = Some(Scan {
                        active,
                        seen: HashMap::new(),
                    });
                    self.station.set_scanning(true);
                } else {
                    self.stop_scan();
                }
                // The reply goes first; the reports follow it.
                rx.push(command_complete(opcode, 0, &[]));
                self.report_advertisers(rx);
                Ok(Reply::Status(Vec::new()))
            }
            _ => self.kept_parameter(opcode, params),
        }
    }

    /// A command that writes or reads a kept parameter.
    fn kept_parameter(&mut self, opcode: u16, params: &[u8]) -> Result<Reply> {
        if let Some(write) = tables::kept_by_read(opcode) {
            return completed(opcode, self.kept(write));
        }
        let (len, _) = tables::kept_by_write(opcode).ok_or(Error::UnknownCommand(opcode))?;
        let fits = match len {
            Len::Exact(n) => params.len() == n,
            Len::UpTo(n) => (1..=n).contains(&params.len()),
        };
        if !fits {
            return Err(Error::InvalidParameters {
                opcode,
                reason: "wrong parameter length",
            });
        }
        if opcode == op::LE_SET_ADV_PARAM && self.advertising {
            return Err(Error::Disallowed {
                opcode,
                reason: "advertising is enabled",
            });
        }
        // Rewritten in place: a parameter written again costs no allocation.
        let kept = self.kept.entry(opcode).or_default();
        kept.clear();
        kept.extend_from_slice(params);
        self.publish();
        completed(opcode, &[])
    }

    /// Inquiry: every station with inquiry scan on answers at once.
    fn inquiry(&mut self, params: &[u8]) -> Result<Reply> {
        let params = exact(op::INQUIRY, params, 5)?;
        let limit = match params.get(4).copied().unwrap_or(0) {
            0 => usize::MAX,
            n => usize::from(n),
        };
        let mut events = Vec::new();
        for found in self.station.inquiry().into_iter().take(limit) {
            let mut e = vec![1];
            e.extend(found.addr);
            // Page scan repetition mode R1, two reserved bytes.
            e.extend([1, 0, 0]);
            e.extend(found.class);
            e.extend([0, 0]);
            events.push(Packet::event(evt::INQUIRY_RESULT, &e));
        }
        events.push(Packet::event(evt::INQUIRY_COMPLETE, &[0]));
        Ok(Reply::Status(events))
    }

    /// Remote Name Request: the station at the address, if it page-scans.
    fn remote_name(&mut self, params: &[u8]) -> Result<Reply> {
        let params = exact(op::REMOTE_NAME_REQ, params, 10)?;
        let mut addr = [0; 6];
        addr.copy_from_slice(params.get(..6).unwrap_or(&[0; 6]));
        let mut e = Vec::with_capacity(1 + 6 + NAME_LEN);
        match self.station.page(&addr) {
            Some(found) => {
                e.push(0);
                e.extend(addr);
                e.extend(found.name.iter().take(NAME_LEN));
            }
            None => {
                e.push(crate::protocol::status::PAGE_TIMEOUT);
                e.extend(addr);
            }
        }
        e.resize(1 + 6 + NAME_LEN, 0);
        Ok(Reply::Status(vec![Packet::event(
            evt::REMOTE_NAME_REQ_COMPLETE,
            &e,
        )]))
    }

    fn command(&mut self, packet: &Packet, rx: &mut Rx) {
        let opcode = packet.opcode().unwrap_or(0);
        let uses_status = matches!(opcode, op::INQUIRY | op::REMOTE_NAME_REQ);
        match self.execute(opcode, packet.payload(), rx) {
            Ok(Reply::Complete(event)) => {
                rx.push(event);
            }
            Ok(Reply::Status(events)) => {
                if uses_status {
                    rx.push(command_status(opcode, 0));
                }
                for e in events {
                    rx.push(e);
                }
            }
            Err(e) => {
                log::debug!("built-in controller: {e}");
                if uses_status {
                    rx.push(command_status(opcode, e.status()));
                } else {
                    rx.push(command_complete(opcode, e.status(), &[]));
                }
            }
        }
    }
}

/// A successful command's reply: Command Complete with status 0 and `ret`.
#[allow(clippy::unnecessary_wraps)] // the shape every command handler returns
fn completed(opcode: u16, ret: &[u8]) -> Result<Reply> {
    Ok(Reply::Complete(command_complete(opcode, 0, ret)))
}

/// `params` if it is exactly `n` bytes long.
fn exact(opcode: u16, params: &[u8], n: usize) -> Result<&[u8]> {
    if params.len() == n {
        Ok(params)
    } else {
        Err(Error::InvalidParameters {
            opcode,
            reason: "wrong parameter length",
        })
    }
}

/// Command Complete (Core Vol 4 Part E §7.7.14), one more command allowed.
pub fn command_complete(opcode: u16, status: u8, ret: &[u8]) -> Packet {
    Packet::event_parts(
        evt::CMD_COMPLETE,
        &[&[1], &opcode.to_le_bytes(), &[status], ret],
    )
}

/// Command Status (Core Vol 4 Part E §7.7.15).
pub fn command_status(opcode: u16, status: u8) -> Packet {
    let mut p = vec![status, 1];
    p.extend(opcode.to_le_bytes());
    Packet::event(evt::CMD_STATUS, &p)
}

/// One LE Advertising Report (Core Vol 4 Part E §7.7.65.2).
fn advertising_report(event_type: u8, adv: &Advertising, data: &[u8]) -> Packet {
    let data = data.get(..data.len().min(31)).unwrap_or_default();
    let mut p = vec![evt::LE_ADVERTISING_REPORT, 1, event_type, adv.addr_type];
    p.extend(adv.addr);
    p.push(u8::try_from(data.len()).unwrap_or(0));
    p.extend(data);
    p.extend(RSSI.to_le_bytes());
    Packet::event(evt::LE_META, &p)
}

impl HciBackend for Builtin {
    fn activate(&mut self, events: EventRegistry) -> Result<()> {
        events
            .register(&*self.wake, EventSet::IN, WAKE)
            .map_err(|e| IoError::new("registering the radio's eventfd", e))?;
        self.registry = Some(events);
        Ok(())
    }

    fn send(&mut self, packet: Packet, rx: &mut Rx) -> Result<()> {
        match packet.kind() {
            Kind::Command => self.command(&packet, rx),
            kind => self
                .log
                .warn(|| format!("built-in controller: {kind:?} data with no connection dropped")),
        }
        Ok(())
    }

    fn ready(&mut self, token: u16, rx: &mut Rx) -> Result<()> {
        if token == WAKE {
            // Empty or not, the radio changed: look.
            let _ = self.wake.read();
            self.report_advertisers(rx);
        }
        Ok(())
    }

    fn resume(&mut self, rx: &mut Rx) -> Result<()> {
        self.report_advertisers(rx);
        Ok(())
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}

#[cfg(test)]
mod tests;
