// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `--print-capabilities`: what a management layer (libvirt) learns about a
//! backend before it starts one, in the shape of QEMU's
//! `docs/interop/vhost-user.json` (`VHostUserBackendCapabilities`).

use clap::Command;

/// The prefix every device binary's name starts with.
const BINARY_PREFIX: &str = "vhost-device-";

/// The vhost-user backend type of a binary, from its clap command name:
/// `vhost-device-gpio` is `gpio`.
///
/// QEMU's schema lists `gpu` and `rpmsg` among our devices. For the others
/// (`i2c`, `gpio`, `sound`, `can`, `bluetooth`) there is no name yet, and we
/// use the device's name as the virtio specification and QEMU's
/// `vhost-user-<name>` devices spell it; see the top-level README.
pub fn backend_type(command: &Command) -> &str {
    let name = command.get_name();
    name.strip_prefix(BINARY_PREFIX).unwrap_or(name)
}

/// Per-type features of the schema, each the name of a command-line option
/// that the backend then accepts. Only the types whose schema has a
/// `features` member are listed.
pub fn schema_features(backend_type: &str) -> Option<&'static [&'static str]> {
    match backend_type {
        "gpu" => Some(&["render-node", "virgl"]),
        "input" => Some(&["evdev-path", "no-grab"]),
        "block" => Some(&["read-only", "blk-file"]),
        _ => None,
    }
}

/// The capabilities JSON: the type, and for types whose schema has
/// features, those whose option `command` really has (so the list can never
/// promise a flag the binary would reject).
pub fn capabilities_json(command: &Command) -> String {
    let kind = backend_type(command);
    let Some(known) = schema_features(kind) else {
        return format!("{{\n  \"type\": \"{kind}\"\n}}");
    };
    let has = |flag: &str| command.get_arguments().any(|a| a.get_long() == Some(flag));
    let features: Vec<String> = known
        .iter()
        .filter(|f| has(f))
        .map(|f| format!("\"{f}\""))
        .collect();
    format!(
        "{{\n  \"type\": \"{kind}\",\n  \"features\": [{}]\n}}",
        features.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    #[test]
    fn type_comes_from_the_binary_name() {
        let json = capabilities_json(&Command::new("vhost-device-i2c"));
        assert_eq!(json, "{\n  \"type\": \"i2c\"\n}");
    }

    #[test]
    fn gpu_lists_only_the_options_it_has() {
        let bare = Command::new("vhost-device-gpu");
        assert_eq!(
            capabilities_json(&bare),
            "{\n  \"type\": \"gpu\",\n  \"features\": []\n}"
        );
        let with = bare.arg(Arg::new("virgl").long("virgl"));
        assert_eq!(
            capabilities_json(&with),
            "{\n  \"type\": \"gpu\",\n  \"features\": [\"virgl\"]\n}"
        );
    }
}
