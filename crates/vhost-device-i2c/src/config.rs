// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `--device-list`: which targets each guest sees, and building the buses.
//!
//! ```text
//! LIST   := ENTRY[,ENTRY...]
//! ENTRY  := BUS:ADDR[:ADDR...]          a host adapter and addresses on it
//!         | sim:ADDR=eeprom:SIZE[:file=PATH]
//!         | sim:ADDR=lm75[:temp=CELSIUS]
//! BUS    := N (for /dev/i2c-N) | the adapter's name in /sys/bus/i2c/devices/i2c-N/name
//! ADDR   := 7-bit address, decimal (as upstream) or 0x-prefixed hex, 0x03..=0x77
//! SIZE   := bytes (128 … 65536, also 2k, 64K) or a part name (24c02 … 24c512)
//! ```
//!
//! With `--socket-count N`, give `--device-list` once (every guest sees the
//! same targets, each guest its own simulated chips) or N times (guest i
//! sees list i only, and a host address may appear in one list only).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::host::{find_adapter, AdapterBus, LinuxAdapter};
use crate::backend::sim::{Eeprom, EepromModel, Lm75, SimBus, SimTarget};
use crate::backend::{BusMap, SharedBus};
use crate::Error;

/// Lowest address a target may have (0x00..0x02 are reserved).
pub const ADDR_MIN: u8 = 0x03;
/// Highest address a target may have (0x78.. are reserved).
pub const ADDR_MAX: u8 = 0x77;

/// A host adapter, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterRef {
    /// `/dev/i2c-N`.
    Number(u32),
    /// The name sysfs gives the adapter.
    Name(String),
}

/// A simulated chip.
#[derive(Debug, Clone, PartialEq)]
pub enum SimKind {
    /// A 24C EEPROM, optionally backed by a file.
    Eeprom {
        /// The part.
        model: EepromModel,
        /// Backing file.
        file: Option<PathBuf>,
    },
    /// An LM75 reading `temp` °C.
    Lm75 {
        /// Temperature.
        temp: f64,
    },
}

impl SimKind {
    fn build(&self) -> Result<Box<dyn SimTarget>, String> {
        Ok(match self {
            SimKind::Eeprom { model, file: None } => Box::new(Eeprom::new(*model)),
            SimKind::Eeprom {
                model,
                file: Some(path),
            } => Box::new(Eeprom::with_file(*model, path)?),
            SimKind::Lm75 { temp } => Box::new(Lm75::with_temperature(*temp)),
        })
    }

    /// Addresses the chip occupies from `base`.
    fn span(&self, base: u8) -> Vec<u8> {
        let count = match self {
            SimKind::Eeprom { model, .. } => model.address_count(),
            SimKind::Lm75 { .. } => 1,
        };
        (0..count).map(|i| base.saturating_add(i)).collect()
    }
}

/// One `--device-list` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Targets on a host adapter.
    Host {
        /// The adapter.
        adapter: AdapterRef,
        /// Their addresses.
        addrs: Vec<u8>,
    },
    /// A simulated chip.
    Sim {
        /// Its (first) address.
        addr: u8,
        /// What it is.
        kind: SimKind,
    },
}

/// An entry with the text it came from, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The entry as written.
    pub text: String,
    /// What it says.
    pub entry: Entry,
}

fn entry_error(text: &str, reason: impl Into<String>) -> Error {
    Error::Entry {
        entry: text.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a 7-bit address: decimal, or hex with `0x`.
pub fn parse_addr(s: &str) -> Result<u8, String> {
    let s = s.trim();
    let value = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
    } else {
        s.parse::<u32>()
    }
    .map_err(|_| format!("\"{s}\" is not an address (decimal, or hex with 0x)"))?;
    match u8::try_from(value) {
        Ok(a) if (ADDR_MIN..=ADDR_MAX).contains(&a) => Ok(a),
        _ => Err(format!(
            "address {s} is outside {ADDR_MIN:#04x}..={ADDR_MAX:#04x}"
        )),
    }
}

fn parse_size(s: &str) -> Result<EepromModel, String> {
    let lower = s.to_ascii_lowercase();
    let size = if let Some(kbits) = lower.strip_prefix("24c") {
        // 24cNN: NN kilobits.
        kbits.parse::<usize>().ok().map(|k| k * 1024 / 8)
    } else if let Some(k) = lower.strip_suffix('k') {
        k.parse::<usize>().ok().map(|k| k * 1024)
    } else {
        lower.parse::<usize>().ok()
    };
    size.and_then(EepromModel::from_size).ok_or_else(|| {
        format!(
            "EEPROM size \"{s}\" is not one of 128, 256, 512, 1k, 2k, 4k, 8k, 16k, 32k, 64k (or 24c01 … 24c512)"
        )
    })
}

fn parse_sim(text: &str, rest: &str) -> Result<Entry, Error> {
    let (addr, kind) = rest
        .split_once('=')
        .ok_or_else(|| entry_error(text, "expected sim:ADDR=KIND, e.g. sim:0x50=eeprom:256"))?;
    let addr = parse_addr(addr).map_err(|e| entry_error(text, e))?;
    let (name, params) = kind.split_once(':').unwrap_or((kind, ""));
    let kind = match name {
        "eeprom" => {
            // file= takes the rest of the entry, so a path may hold ':'.
            let (params, file) = match params.find("file=") {
                Some(at) => (
                    params.get(..at).unwrap_or_default().trim_end_matches(':'),
                    params.get(at + 5..).map(PathBuf::from),
                ),
                None => (params, None),
            };
            let mut parts = params.split(':').filter(|p| !p.is_empty());
            let size = parts
                .next()
                .ok_or_else(|| entry_error(text, "eeprom needs a size, e.g. eeprom:256"))?;
            let model = parse_size(size).map_err(|e| entry_error(text, e))?;
            if let Some(extra) = parts.next() {
                return Err(entry_error(
                    text,
                    format!("unknown eeprom option \"{extra}\""),
                ));
            }
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                return Err(entry_error(text, "file= needs a path"));
            }
            SimKind::Eeprom { model, file }
        }
        "lm75" => {
            let mut temp = 25.0;
            for param in params.split(':').filter(|p| !p.is_empty()) {
                match param.split_once('=') {
                    Some(("temp", value)) => {
                        temp = value
                            .parse::<f64>()
                            .ok()
                            .filter(|t| (-55.0..=125.0).contains(t))
                            .ok_or_else(|| {
                                entry_error(
                                    text,
                                    format!("temp={value} is not a number in -55..=125"),
                                )
                            })?;
                    }
                    _ => {
                        return Err(entry_error(
                            text,
                            format!("unknown lm75 option \"{param}\""),
                        ))
                    }
                }
            }
            SimKind::Lm75 { temp }
        }
        "" => {
            return Err(entry_error(
                text,
                "missing the target kind (eeprom or lm75)",
            ))
        }
        other => {
            return Err(entry_error(
                text,
                format!("unknown simulated target \"{other}\" (eeprom or lm75)"),
            ))
        }
    };
    if let Some(last) = kind.span(addr).last() {
        if *last > ADDR_MAX || kind.span(addr).len() > usize::from(ADDR_MAX - addr) + 1 {
            return Err(entry_error(
                text,
                format!("the chip needs addresses up to {last:#04x}, past {ADDR_MAX:#04x}"),
            ));
        }
    }
    Ok(Entry::Sim { addr, kind })
}

fn parse_entry(text: &str) -> Result<Entry, Error> {
    let (bus, rest) = text
        .split_once(':')
        .ok_or_else(|| entry_error(text, "expected BUS:ADDR[:ADDR...] or sim:ADDR=KIND"))?;
    if bus == "sim" {
        return parse_sim(text, rest);
    }
    if bus.is_empty() {
        return Err(entry_error(text, "missing the adapter number or name"));
    }
    let adapter = match bus.parse::<u32>() {
        Ok(n) => AdapterRef::Number(n),
        Err(_) => AdapterRef::Name(bus.to_owned()),
    };
    let addrs = rest
        .split(':')
        .map(parse_addr)
        .collect::<Result<Vec<u8>, String>>()
        .map_err(|e| entry_error(text, e))?;
    Ok(Entry::Host { adapter, addrs })
}

/// Parses one `--device-list` value and checks that no address is used
/// twice in it.
///
/// # Errors
/// [`Error::Entry`] naming the first bad entry.
pub fn parse_list(list: &str) -> Result<Vec<Spec>, Error> {
    let mut specs = Vec::new();
    let mut owner: BTreeMap<u8, String> = BTreeMap::new();
    for text in list.split(',').map(str::trim) {
        if text.is_empty() {
            return Err(Error::Entry {
                entry: list.to_owned(),
                reason: "empty entry (stray comma?)".into(),
            });
        }
        let entry = parse_entry(text)?;
        let addrs = match &entry {
            Entry::Host { addrs, .. } => addrs.clone(),
            Entry::Sim { addr, kind } => kind.span(*addr),
        };
        for (i, a) in addrs.iter().enumerate() {
            if addrs.get(..i).is_some_and(|before| before.contains(a)) {
                return Err(entry_error(
                    text,
                    format!("address {a:#04x} is listed twice"),
                ));
            }
            if let Some(other) = owner.get(a) {
                return Err(entry_error(
                    text,
                    format!("address {a:#04x} is already taken by \"{other}\""),
                ));
            }
        }
        for a in addrs {
            owner.insert(a, text.to_owned());
        }
        specs.push(Spec {
            text: text.to_owned(),
            entry,
        });
    }
    Ok(specs)
}

/// `--transfer-timeout-ms`'s default: Linux's own for most adapters.
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(1);

/// Where host adapters are looked up, and how they are set up.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// sysfs mount point (`/sys`).
    pub sysfs: PathBuf,
    /// Device directory (`/dev`).
    pub dev: PathBuf,
    /// How long a host adapter's driver may wait for one transfer
    /// (`--transfer-timeout-ms`; see [`LinuxAdapter::set_timeout`]).
    pub transfer_timeout: Duration,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
        }
    }
}

/// Builds the bus of every guest from the `--device-list` values (one, or
/// one per guest), opening host adapters and backing files once.
///
/// # Errors
/// The first bad entry, missing adapter, address in use or unusable file.
pub fn build(lists: &[String], guests: usize, paths: &HostPaths) -> Result<Vec<BusMap>, Error> {
    let per_guest = per_guest_specs(lists, guests)?;
    let (adapters, resolved) = resolve(&per_guest, guests, lists.len() == 1, paths)?;
    let mut opened: BTreeMap<u32, SharedBus> = BTreeMap::new();
    for (number, addrs) in &adapters {
        let adapter = LinuxAdapter::open(&paths.dev, *number, addrs)?;
        adapter
            .set_timeout(paths.transfer_timeout)
            .map_err(|e| Error::Adapter {
                adapter: format!("i2c-{number}"),
                reason: format!("I2C_TIMEOUT: {e}"),
            })?;
        let bus: SharedBus = Arc::new(Mutex::new(AdapterBus::new(adapter)));
        opened.insert(*number, bus);
    }

    per_guest
        .iter()
        .zip(&resolved)
        .map(|(specs, numbers)| guest_map(specs, numbers, &opened))
        .collect()
}

/// The entries of each guest: one list shared by all, or one per guest.
fn per_guest_specs(lists: &[String], guests: usize) -> Result<Vec<Vec<Spec>>, Error> {
    Ok(match lists.len() {
        0 => return Err(Error::ListCount { given: 0, guests }),
        1 => {
            let specs = parse_list(lists.first().map(String::as_str).unwrap_or_default())?;
            vec![specs; guests]
        }
        n if n == guests => lists
            .iter()
            .map(|l| parse_list(l))
            .collect::<Result<_, _>>()?,
        given => return Err(Error::ListCount { given, guests }),
    })
}

/// What [`resolve`] finds: each adapter's addresses, each entry's adapter.
type Resolved = (BTreeMap<u32, Vec<u8>>, Vec<Vec<Option<u32>>>);

/// Each host adapter's addresses over all guests, and the adapter number
/// of each guest's entries (`None` for simulated chips). Checks that no
/// host address or backing file is given to two guests.
fn resolve(
    per_guest: &[Vec<Spec>],
    guests: usize,
    shared_list: bool,
    paths: &HostPaths,
) -> Result<Resolved, Error> {
    // Resolve adapters; collect each adapter's addresses over all guests.
    let mut adapters: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut resolved: Vec<Vec<Option<u32>>> = Vec::new();
    let mut host_owner: BTreeMap<(u32, u8), (usize, String)> = BTreeMap::new();
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (guest, specs) in per_guest.iter().enumerate() {
        let mut numbers = Vec::new();
        for spec in specs {
            match &spec.entry {
                Entry::Host { adapter, addrs } => {
                    let number = match adapter {
                        AdapterRef::Number(n) => *n,
                        AdapterRef::Name(name) => find_adapter(&paths.sysfs, name)
                            .map_err(|e| entry_error(&spec.text, e))?,
                    };
                    for &a in addrs {
                        if let Some((other, text)) = host_owner.get(&(number, a)) {
                            if *other != guest && !shared_list {
                                return Err(entry_error(
                                    &spec.text,
                                    format!(
                                        "address {a:#04x} on adapter {number} is already given to guest {other} (\"{text}\")"
                                    ),
                                ));
                            }
                        }
                        host_owner.insert((number, a), (guest, spec.text.clone()));
                        let list = adapters.entry(number).or_default();
                        if !list.contains(&a) {
                            list.push(a);
                        }
                    }
                    numbers.push(Some(number));
                }
                Entry::Sim {
                    kind:
                        SimKind::Eeprom {
                            file: Some(path), ..
                        },
                    ..
                } => {
                    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                    if let Some(other) = files.insert(key, spec.text.clone()) {
                        return Err(entry_error(
                            &spec.text,
                            if shared_list && guests > 1 {
                                "a file-backed EEPROM cannot be shared by several guests; give each guest its own --device-list".to_owned()
                            } else {
                                format!(
                                    "{} is already the backing file of \"{other}\"",
                                    path.display()
                                )
                            },
                        ));
                    }
                    numbers.push(None);
                }
                Entry::Sim { .. } => numbers.push(None),
            }
        }
        resolved.push(numbers);
    }

    Ok((adapters, resolved))
}

/// One guest's bus: its share of the opened adapters and its simulated chips.
fn guest_map(
    specs: &[Spec],
    numbers: &[Option<u32>],
    opened: &BTreeMap<u32, SharedBus>,
) -> Result<BusMap, Error> {
    let mut map = BusMap::new();
    let mut sim = SimBus::new();
    let mut sim_addrs = Vec::new();
    let mut host_addrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for (spec, number) in specs.iter().zip(numbers) {
        match (&spec.entry, number) {
            (Entry::Host { addrs, .. }, Some(n)) => {
                host_addrs.entry(*n).or_default().extend(addrs);
            }
            (Entry::Sim { addr, kind }, _) => {
                let target = kind.build().map_err(|e| entry_error(&spec.text, e))?;
                let span = sim
                    .add(*addr, target)
                    .map_err(|a| entry_error(&spec.text, format!("address {a:#04x} is taken")))?;
                sim_addrs.extend(span);
            }
            (Entry::Host { .. }, None) => {}
        }
    }
    for (n, addrs) in host_addrs {
        if let Some(bus) = opened.get(&n) {
            map.add(bus.clone(), &addrs);
        }
    }
    if !sim_addrs.is_empty() {
        let bus: SharedBus = Arc::new(Mutex::new(sim));
        map.add(bus, &sim_addrs);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn err(list: &str) -> String {
        parse_list(list).unwrap_err().to_string()
    }

    #[test]
    fn upstream_syntax() {
        let specs = parse_list("6:32:21,5:10:23").unwrap();
        assert_eq!(
            specs[0].entry,
            Entry::Host {
                adapter: AdapterRef::Number(6),
                addrs: vec![32, 21]
            }
        );
        assert_eq!(specs[1].text, "5:10:23");
        let specs = parse_list("SMBus stub driver:0x50").unwrap();
        assert_eq!(
            specs[0].entry,
            Entry::Host {
                adapter: AdapterRef::Name("SMBus stub driver".into()),
                addrs: vec![0x50]
            }
        );
    }

    #[test]
    fn simulated_targets() {
        let specs =
            parse_list("sim:0x50=eeprom:256,sim:0x48=lm75,sim:0x49=lm75:temp=-3.5").unwrap();
        assert_eq!(
            specs[0].entry,
            Entry::Sim {
                addr: 0x50,
                kind: SimKind::Eeprom {
                    model: EepromModel::from_size(256).unwrap(),
                    file: None
                }
            }
        );
        assert_eq!(
            specs[2].entry,
            Entry::Sim {
                addr: 0x49,
                kind: SimKind::Lm75 { temp: -3.5 }
            }
        );
        let specs = parse_list("sim:0x50=eeprom:64K:file=/tmp/a:b.bin").unwrap();
        assert_eq!(
            specs[0].entry,
            Entry::Sim {
                addr: 0x50,
                kind: SimKind::Eeprom {
                    model: EepromModel::from_size(65536).unwrap(),
                    file: Some("/tmp/a:b.bin".into())
                }
            }
        );
        let specs = parse_list("sim:80=eeprom:24c16").unwrap();
        assert!(matches!(specs[0].entry, Entry::Sim { addr: 0x50, .. }));
    }

    #[test]
    fn malformed_entries_name_themselves() {
        for (list, entry, words) in [
            ("1", "1", "expected"),
            ("1:0x50,,2:0x51", "1:0x50,,2:0x51", "empty"),
            (":0x50", ":0x50", "adapter"),
            ("1:0x50:zz", "1:0x50:zz", "not an address"),
            ("1:0x78", "1:0x78", "outside"),
            ("1:2", "1:2", "outside"),
            ("1:", "1:", "not an address"),
            ("sim:0x50", "sim:0x50", "sim:ADDR=KIND"),
            ("sim:0x50=eeprom", "sim:0x50=eeprom", "size"),
            ("sim:0x50=eeprom:300", "sim:0x50=eeprom:300", "300"),
            (
                "sim:0x50=eeprom:256:fast",
                "sim:0x50=eeprom:256:fast",
                "fast",
            ),
            (
                "sim:0x50=eeprom:256:file=",
                "sim:0x50=eeprom:256:file=",
                "path",
            ),
            ("sim:0x50=flash", "sim:0x50=flash", "flash"),
            ("sim:0x50=", "sim:0x50=", "kind"),
            ("sim:0x48=lm75:temp=hot", "sim:0x48=lm75:temp=hot", "hot"),
            ("sim:0x48=lm75:temp=200", "sim:0x48=lm75:temp=200", "200"),
            ("sim:0x48=lm75:x", "sim:0x48=lm75:x", "x"),
            ("sim:0x74=eeprom:2k", "sim:0x74=eeprom:2k", "past"),
        ] {
            let e = err(list);
            assert!(e.contains(&format!("\"{entry}\"")), "{list}: {e}");
            assert!(e.contains(words), "{list}: {e}");
        }
    }

    #[test]
    fn duplicate_addresses_are_refused() {
        let e = err("1:0x50,sim:0x50=lm75");
        assert!(
            e.contains("\"sim:0x50=lm75\"") && e.contains("\"1:0x50\""),
            "{e}"
        );
        let e = err("sim:0x50=eeprom:512,sim:0x51=lm75");
        assert!(e.contains("0x51") && e.contains("eeprom:512"), "{e}");
        let e = err("1:0x20:32");
        assert!(e.contains("twice"), "{e}");
        // The same address on different lists is fine.
        parse_list("sim:0x50=lm75").unwrap();
    }

    #[test]
    fn one_list_or_one_per_guest() {
        let paths = HostPaths::default();
        let maps = build(&["sim:0x50=eeprom:256".into()], 3, &paths).unwrap();
        assert_eq!(maps.len(), 3);
        assert!(maps.iter().all(|m| m.addresses() == vec![0x50]));
        let maps = build(
            &["sim:0x50=eeprom:512".into(), "sim:0x48=lm75".into()],
            2,
            &paths,
        )
        .unwrap();
        assert_eq!(maps[0].addresses(), vec![0x50, 0x51]);
        assert_eq!(maps[1].addresses(), vec![0x48]);
        let e = build(&["sim:0x48=lm75".into(), "sim:0x48=lm75".into()], 3, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains('2') && e.contains('3'), "{e}");
        build(&[], 1, &paths).unwrap_err();
    }

    #[test]
    fn guests_have_their_own_chips() {
        let paths = HostPaths::default();
        let maps = build(&["sim:0x50=eeprom:256".into()], 2, &paths).unwrap();
        use crate::backend::I2cMsg;
        maps[0]
            .transfer(&mut [I2cMsg::write(0x50, &[0, 0x42])])
            .unwrap();
        let mut a = [I2cMsg::write(0x50, &[0]), I2cMsg::read(0x50, 1)];
        maps[0].transfer(&mut a).unwrap();
        let mut b = [I2cMsg::write(0x50, &[0]), I2cMsg::read(0x50, 1)];
        maps[1].transfer(&mut b).unwrap();
        assert_eq!(a[1].buf, [0x42]);
        assert_eq!(b[1].buf, [0xff]);
    }

    #[test]
    fn backing_files_are_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::default();
        let list = format!("sim:0x50=eeprom:256:file={}/e.bin", dir.path().display());
        build(std::slice::from_ref(&list), 1, &paths).unwrap();
        let e = build(std::slice::from_ref(&list), 2, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("own --device-list"), "{e}");
        let e = build(&[list.clone(), list], 2, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already the backing file"), "{e}");
        let bad = "sim:0x50=eeprom:256:file=/nonexistent-dir/e.bin".to_owned();
        let e = build(&[bad], 1, &paths).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent-dir/e.bin") && e.contains("sim:0x50"),
            "{e}"
        );
    }

    #[test]
    fn missing_adapters_are_named() {
        let root = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            sysfs: root.path().into(),
            dev: root.path().into(),
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
        };
        let e = build(&["no such adapter:0x50".into()], 1, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"no such adapter:0x50\""), "{e}");
        let e = build(&["97:0x50".into()], 1, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("i2c-97") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn host_addresses_are_not_shared_between_separate_lists() {
        let root = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            sysfs: root.path().into(),
            dev: root.path().into(),
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
        };
        let e = build(&["5:0x20".into(), "5:0x20".into()], 2, &paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("guest 0"), "{e}");
    }
}
