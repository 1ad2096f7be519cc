//! The process an `exec` runs in a running container: the container's own process (its
//! namespaces, capabilities, seccomp, rlimits) with the command, environment, terminal,
//! directory and user the exec asks. `exec` and the healthcheck both run through it.

use std::path::Path;

use oci_spec::runtime::Process;
use serde_json::json;

use crate::error::{failed, Context, Result};
use crate::options::ExecOptions;
use crate::store::{self, Container};

pub fn process(root: &Path, c: &Container, opts: &ExecOptions) -> Result<Process> {
    let record = store::runtime(root)
        .record(&c.id)
        .map_err(|e| failed!("container {}: {e}", c.name))?;
    let mut process = record
        .config
        .process()
        .clone()
        .ok_or_else(|| failed!("container {} has no process", c.name))?;
    let mut env = c.env.clone();
    crate::spec::merge_env(&mut env, &opts.env);
    process.set_args(Some(opts.command.clone()));
    process.set_env(Some(env));
    process.set_terminal(Some(opts.tty));
    if let Some(w) = &opts.workdir {
        process.set_cwd(w.into());
    }
    if let Some(u) = &opts.user {
        let rootfs = store::dir(root, &c.id).join("rootfs");
        let (uid, gid) = crate::user::resolve(&rootfs, u)?;
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(None);
        process.set_user(user);
    }
    if opts.privileged {
        let all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
            .map_err(|e| failed!("cannot read the capability bounding set: {e}"))?
            .iter()
            .map(|c| c.to_string())
            .collect();
        let caps: oci_spec::runtime::LinuxCapabilities =
            serde_json::from_value(json!({"bounding": all, "effective": all, "permitted": all}))
                .context("capabilities")?;
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}
