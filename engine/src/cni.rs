//! CNI's protocol, spoken as a runtime speaks it (containerd and nerdctl through libcni): each
//! plugin of a network's list is executed with `CNI_*` in its environment and its config on
//! stdin; ADD runs the list in order, each plugin seeing the result before it as `prevResult`;
//! DEL runs it backwards with the last ADD's result. The plugins themselves (Debian's
//! `containernetworking-plugins`) make the bridge, the veth pair, the addresses, NAT and ports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::error::{failed, Error, Result};

/// The version of the protocol husk speaks (the plugins of Debian 12 speak up to 1.0.0).
pub const VERSION: &str = "1.0.0";

/// Where plugins are looked for, in this order: Debian's, then the upstream tarball's.
const PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];

/// One container's side of a call: who it is and where its interface goes.
pub struct Target<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// What a plugin that declares a matching capability gets as `runtimeConfig`
    /// (`portMappings` for portmap).
    pub runtime_config: &'a Value,
}

fn find_plugin(kind: &str) -> Result<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return Err(failed!("invalid CNI plugin type {kind:?}"));
    }
    PLUGIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            failed!(
                "CNI plugin {kind:?} not found in {} (Debian: apt install containernetworking-plugins)",
                PLUGIN_DIRS.join(":")
            )
        })
}

/// The config one plugin of `list` reads on stdin.
fn plugin_config(list: &Value, plugin: &Value, target: &Target, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = json!(VERSION);
    conf["name"] = list["name"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    // Only the capabilities a plugin asks for reach it.
    if let Some(caps) = plugin["capabilities"].as_object() {
        let mut rc = serde_json::Map::new();
        for (k, on) in caps {
            if on.as_bool() == Some(true) && !target.runtime_config[k].is_null() {
                rc.insert(k.clone(), target.runtime_config[k].clone());
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
    }
    conf
}

fn exec(command: &str, conf: &Value, target: &Target) -> Result<Value> {
    let kind = conf["type"].as_str().unwrap_or_default().to_string();
    let path = find_plugin(&kind)?;
    let dirs = PLUGIN_DIRS.join(":");
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", target.container_id)
        .env("CNI_NETNS", target.netns)
        .env("CNI_IFNAME", target.ifname)
        .env("CNI_PATH", dirs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed!("cannot run CNI plugin {}: {e}", path.display()))?;
    let body = serde_json::to_vec(conf)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(&body);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed!("CNI plugin {kind} {command}: {e}"))?;
    if !out.status.success() {
        // The protocol's error: {"code": N, "msg": "...", "details": "..."} on stdout.
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut why = err["msg"].as_str().unwrap_or_default().to_string();
        if let Some(d) = err["details"].as_str().filter(|d| !d.is_empty()) {
            why = format!("{why}: {d}");
        }
        if why.is_empty() {
            why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        if why.is_empty() {
            why = format!("exited with {}", out.status);
        }
        return Err(Error::Failed(format!(
            "CNI plugin {kind} {command} on network {}: {}",
            conf["name"].as_str().unwrap_or_default(),
            why.lines().next().unwrap_or_default()
        )));
    }
    if command == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| failed!("CNI plugin {kind} {command} gave a result that is not JSON: {e}"))
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// ADD the container to the network `list` describes; its last plugin's result. A list that
/// fails half way is deleted again, as the spec asks of a runtime.
pub fn add(list: &Value, target: &Target) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for plugin in plugins(list) {
        let conf = plugin_config(list, plugin, target, prev.as_ref());
        match exec("ADD", &conf, target) {
            Ok(Value::Null) => {}
            Ok(r) => prev = Some(r),
            Err(e) => {
                let _ = del(list, target, prev.as_ref());
                return Err(e);
            }
        }
    }
    prev.ok_or_else(|| {
        failed!(
            "network {}: its CNI plugins gave no result",
            list["name"].as_str().unwrap_or_default()
        )
    })
}

/// DEL the container from the network, every plugin even when one fails (the first error is
/// returned); what is already gone is no error to the plugins.
pub fn del(list: &Value, target: &Target, prev: Option<&Value>) -> Result<()> {
    let mut first = None;
    for plugin in plugins(list).iter().rev() {
        let conf = plugin_config(list, plugin, target, prev);
        if let Err(e) = exec("DEL", &conf, target) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_sees_only_the_capabilities_it_declares() {
        let list = json!({"name": "n", "plugins": [
            {"type": "bridge"},
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ]});
        let rc = json!({"portMappings": [{"hostPort": 8080}], "other": 1});
        let target = Target {
            container_id: "c",
            netns: Path::new("/x"),
            ifname: "eth0",
            runtime_config: &rc,
        };
        let bridge = plugin_config(&list, &plugins(&list)[0], &target, None);
        assert!(bridge["runtimeConfig"].is_null());
        assert_eq!(bridge["name"], "n");
        let prev = json!({"ips": []});
        let portmap = plugin_config(&list, &plugins(&list)[1], &target, Some(&prev));
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(portmap["cniVersion"], VERSION);
    }

    #[test]
    fn plugin_types_are_names_not_paths() {
        assert!(find_plugin("../../bin/sh").is_err());
        assert!(find_plugin("").is_err());
    }
}
