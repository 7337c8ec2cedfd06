// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The rules of QEMU's `docs/interop/vhost-user.json` for a backend
//! descriptor (`VhostUserBackend`) and for what `--print-capabilities`
//! prints (`VHostUserBackendCapabilities`).

use serde_json::{Map, Value};
use vhost_device_common::capabilities::schema_features;

/// `VHostUserBackendType` as the schema lists it.
pub const SCHEMA_TYPES: &[&str] = &[
    "9p",
    "balloon",
    "block",
    "caif",
    "console",
    "crypto",
    "gpu",
    "input",
    "net",
    "rng",
    "rpmsg",
    "rproc-serial",
    "scsi",
    "vsock",
    "fs",
];

/// Types our devices use that the schema does not list yet: the device's
/// name as the virtio specification and QEMU's `vhost-user-*` devices
/// spell it (README: "vhost-user descriptors").
pub const EXTENSION_TYPES: &[&str] = &["i2c", "gpio", "sound", "can", "bluetooth"];

/// A descriptor that follows the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub description: String,
    pub kind: String,
    pub binary: String,
    pub tags: Vec<String>,
}

fn object(value: &Value, what: &str) -> Result<Map<String, Value>, String> {
    value
        .as_object()
        .cloned()
        .ok_or_else(|| format!("{what}: not a JSON object"))
}

fn string(map: &Map<String, Value>, key: &str, what: &str) -> Result<String, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("{what}: `{key}` is not a non-empty string")),
        None => Err(format!("{what}: `{key}` is missing")),
    }
}

fn strings(value: &Value, key: &str, what: &str) -> Result<Vec<String>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{what}: `{key}` is not a list"))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{what}: `{key}` has a non-string member"))
        })
        .collect()
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unknown member `{k}`")),
        None => Ok(()),
    }
}

fn known_type(kind: &str, what: &str) -> Result<(), String> {
    if SCHEMA_TYPES.contains(&kind) || EXTENSION_TYPES.contains(&kind) {
        Ok(())
    } else {
        Err(format!("{what}: `{kind}` is not a VHostUserBackendType"))
    }
}

/// Checks a `VhostUserBackend` descriptor.
pub fn parse_descriptor(text: &str) -> Result<Descriptor, String> {
    let what = "descriptor";
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    let map = object(&value, what)?;
    only_keys(&map, &["description", "type", "binary", "tags"], what)?;
    let kind = string(&map, "type", what)?;
    known_type(&kind, what)?;
    let binary = string(&map, "binary", what)?;
    if !binary.starts_with('/') {
        return Err(format!(
            "{what}: `binary` {binary:?} is not an absolute path"
        ));
    }
    let tags = match map.get("tags") {
        Some(v) => strings(v, "tags", what)?,
        None => Vec::new(),
    };
    Ok(Descriptor {
        description: string(&map, "description", what)?,
        kind,
        binary,
        tags,
    })
}

/// Checks what `--print-capabilities` printed, for a backend of `kind`.
pub fn check_capabilities(text: &str, kind: &str) -> Result<(), String> {
    let what = "capabilities";
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    let map = object(&value, what)?;
    let got = string(&map, "type", what)?;
    if got != kind {
        return Err(format!(
            "{what}: type `{got}`, the descriptor says `{kind}`"
        ));
    }
    known_type(&got, what)?;
    let Some(allowed) = schema_features(&got) else {
        return only_keys(&map, &["type"], what);
    };
    only_keys(&map, &["type", "features"], what)?;
    let features = map
        .get("features")
        .ok_or_else(|| format!("{what}: `features` is missing"))?;
    for f in strings(features, "features", what)? {
        if !allowed.contains(&f.as_str()) {
            return Err(format!("{what}: `{f}` is not a {got} feature"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_follow_the_schema() {
        let good = r#"{"description": "d", "type": "gpu", "binary": "/usr/bin/x", "tags": ["a"]}"#;
        assert_eq!(parse_descriptor(good).map(|d| d.kind), Ok("gpu".into()));
        for bad in [
            r#"{"description": "d", "type": "gpu", "binary": "x"}"#,
            r#"{"description": "d", "type": "tv", "binary": "/x"}"#,
            r#"{"description": "d", "type": "gpu"}"#,
            r#"{"description": "d", "type": "gpu", "binary": "/x", "extra": 1}"#,
            r#"{"description": "d", "type": "gpu", "binary": "/x", "tags": [1]}"#,
            r#"["not an object"]"#,
        ] {
            assert!(parse_descriptor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capabilities_follow_the_schema() {
        assert_eq!(check_capabilities(r#"{"type": "i2c"}"#, "i2c"), Ok(()));
        assert_eq!(
            check_capabilities(r#"{"type": "gpu", "features": ["virgl"]}"#, "gpu"),
            Ok(())
        );
        for (bad, kind) in [
            (r#"{"type": "i2c"}"#, "gpio"),
            (r#"{"type": "gpu"}"#, "gpu"),
            (r#"{"type": "gpu", "features": ["3d"]}"#, "gpu"),
            (r#"{"type": "i2c", "features": []}"#, "i2c"),
        ] {
            assert!(check_capabilities(bad, kind).is_err(), "{bad}");
        }
    }
}
