//! The network verbs of [`Engine`]: `network create/ls/inspect/rm/prune/connect/disconnect`
//! and `port`.

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::networking;
use crate::networks::{self, CreateOptions, Network};
use crate::options::PortMapping;
use crate::store::{self, Container, Status};

impl Engine {
    /// `network create`.
    pub fn create_network(&self, opts: &CreateOptions) -> Result<Network> {
        if crate::rootless::is_rootless() {
            return Err(Error::Invalid(format!(
                "cannot create network {}: rootless husk makes no bridges (they need root); its containers use pasta",
                opts.name
            )));
        }
        let n = networks::create(&self.root, opts)?;
        crate::events::emit(
            &self.root,
            "network",
            "create",
            &n.id,
            &[("name", &n.name), ("type", &n.driver)],
        );
        Ok(n)
    }

    /// Every network: the default bridge, `host`, `none` and the user networks.
    pub fn networks(&self) -> Result<Vec<Network>> {
        networks::find(&self.root, networks::DEFAULT)?;
        let mut all = networks::list(&self.root)?;
        all.extend(networks::mode_networks());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The network `query` names (name, id or unique id prefix).
    pub fn network(&self, query: &str) -> Result<Network> {
        if let Some(n) = networks::mode_networks()
            .into_iter()
            .find(|n| n.name == query)
        {
            return Ok(n);
        }
        networks::find(&self.root, query)
    }

    /// docker-shaped `network inspect`, with the running containers on it.
    pub fn inspect_network(&self, query: &str) -> Result<Value> {
        let n = self.network(query)?;
        let mut containers = serde_json::Map::new();
        for c in networking::users(&self.root, &n.name)? {
            let Some(a) = networking::live(&self.root, &c.id)
                .and_then(|l| l.attachments.into_iter().find(|a| a.network == n.name))
            else {
                continue;
            };
            containers.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "MacAddress": a.mac,
                    "IPv4Address": a.ip.map(|ip| format!("{ip}/{}", a.prefix)).unwrap_or_default(),
                    "IPv6Address": "",
                }),
            );
        }
        let config = if n.subnet.is_empty() {
            json!([])
        } else {
            json!([{"Subnet": n.subnet, "Gateway": n.gateway.to_string()}])
        };
        let mut options = serde_json::Map::new();
        if !n.bridge.is_empty() {
            options.insert("com.docker.network.bridge.name".into(), json!(n.bridge));
        }
        Ok(json!({
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local",
            "Driver": n.driver, "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": n.internal, "Attachable": false, "Ingress": false,
            "Containers": containers, "Options": options, "Labels": n.labels,
        }))
    }

    /// `network rm`: refused for the built-in networks and for one a container uses.
    pub fn remove_network(&self, query: &str) -> Result<String> {
        let n = self.network(query)?;
        if n.name == networks::DEFAULT || n.driver != "bridge" {
            return Err(Error::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let users = networking::users(&self.root, &n.name)?;
        if !users.is_empty() {
            let names: Vec<&str> = users.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::Conflict(format!(
                "network {} is in use by container {}",
                n.name,
                names.join(", ")
            )));
        }
        networks::remove(&self.root, &n)?;
        crate::events::emit(
            &self.root,
            "network",
            "destroy",
            &n.id,
            &[("name", &n.name), ("type", &n.driver)],
        );
        Ok(n.name)
    }

    /// `network prune`: what a killed monitor left of stopped containers' networks goes,
    /// then every user network no container uses. Returns the networks removed.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        for c in store::list(&self.root)? {
            if c.observed().status != Status::Running
                && !c.busy()
                && networking::live(&self.root, &c.id).is_some()
            {
                let _l = store::lock(&self.root, &c.id)?;
                networking::detach(&self.root, &c.id);
            }
        }
        let mut removed = Vec::new();
        for n in networks::list(&self.root)? {
            if n.name != networks::DEFAULT && networking::users(&self.root, &n.name)?.is_empty() {
                networks::remove(&self.root, &n)?;
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// `network connect`: a running container gets an interface on `network` now, and every
    /// start after; a stopped one at its next start.
    pub fn connect(&self, network: &str, container: &str) -> Result<()> {
        let n = self.network(network)?;
        let c = store::find(&self.root, container)?;
        if n.driver != "bridge" {
            return Err(Error::Invalid(format!(
                "container {} cannot be connected to the {} network",
                c.name, n.name
            )));
        }
        match networking::mode(&c) {
            networking::Mode::Networks(on) if on.contains(&n.name.as_str()) => {
                return Err(Error::Conflict(format!(
                    "container {} is already connected to network {}",
                    c.name, n.name
                )))
            }
            networking::Mode::Networks(_) => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "container {} uses network mode {}: it cannot join other networks",
                    c.name, c.network
                )))
            }
        }
        if c.observed().status == Status::Running {
            let _l = store::lock(&self.root, &c.id)?;
            networking::connect(&self.root, &c, &n)?;
        }
        Container::update(&self.root, &c.id, |c| c.extra_networks.push(n.name.clone()))?;
        crate::events::emit(
            &self.root,
            "network",
            "connect",
            &n.id,
            &[("name", &n.name), ("container", &c.id)],
        );
        Ok(())
    }

    /// `network disconnect`: the container leaves a network it joined with `connect`.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        let n = self.network(network)?;
        let c = store::find(&self.root, container)?;
        if c.network == n.name {
            return Err(Error::Invalid(format!(
                "container {} cannot leave {}: it is the network it was created on",
                c.name, n.name
            )));
        }
        if !c.extra_networks.contains(&n.name) {
            return Err(Error::Conflict(format!(
                "container {} is not connected to network {}",
                c.name, n.name
            )));
        }
        if c.observed().status == Status::Running {
            let _l = store::lock(&self.root, &c.id)?;
            networking::disconnect(&self.root, &c, &n.name)?;
        }
        Container::update(&self.root, &c.id, |c| {
            c.extra_networks.retain(|x| x != &n.name)
        })?;
        crate::events::emit(
            &self.root,
            "network",
            "disconnect",
            &n.id,
            &[("name", &n.name), ("container", &c.id)],
        );
        Ok(())
    }

    /// `port`: the container's published ports with the host ports they got (none unless it
    /// runs).
    pub fn ports(&self, container: &str) -> Result<Vec<PortMapping>> {
        let c = store::find(&self.root, container)?;
        if c.observed().status != Status::Running {
            return Ok(Vec::new());
        }
        Ok(networking::live(&self.root, &c.id)
            .map(|l| l.ports)
            .unwrap_or_default())
    }

    /// docker's PORTS column of `ps` for one container.
    pub fn ports_column(&self, c: &Container) -> String {
        if c.observed().status != Status::Running {
            return String::new();
        }
        networking::ports_column(&self.root, c)
    }
}
