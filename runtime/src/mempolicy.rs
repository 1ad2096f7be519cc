//! `linux.memoryPolicy`: the container's NUMA memory policy, set with set_mempolicy(2) in the
//! init (and in each `exec`'d process) before it execs, so every process of the container
//! inherits it.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::error::{Error, Result};

/// The mode and flags as the kernel numbers them, and the node mask: checked at `create`.
pub struct Policy {
    mode: i32,
    mask: Vec<u64>,
}

/// Check `p` (nodes that parse, nodes where the mode needs them and none where it takes none).
pub fn parse(p: &LinuxMemoryPolicy) -> Result<Policy> {
    let invalid = |why: String| Error::InvalidConfig(format!("linux.memoryPolicy: {why}"));
    let (mode, nodes_wanted) = match p.mode() {
        MemoryPolicyModeType::MpolDefault => (0, Some(false)),
        MemoryPolicyModeType::MpolPreferred => (1, None),
        MemoryPolicyModeType::MpolBind => (2, Some(true)),
        MemoryPolicyModeType::MpolInterleave => (3, Some(true)),
        MemoryPolicyModeType::MpolLocal => (4, Some(false)),
        MemoryPolicyModeType::MpolPreferredMany => (5, Some(true)),
        MemoryPolicyModeType::MpolWeightedInterleave => (6, Some(true)),
    };
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        };
    }
    let nodes = p.nodes().as_deref().unwrap_or("").trim();
    let Some(list) = crate::util::parse_list(nodes, 4096) else {
        return Err(invalid(format!(
            "nodes {nodes:?}: use ranges like 0-3,7 (below 4096)"
        )));
    };
    let mut mask: Vec<u64> = Vec::new();
    for n in list {
        if mask.len() <= n / 64 {
            mask.resize(n / 64 + 1, 0);
        }
        mask[n / 64] |= 1 << (n % 64);
    }
    match nodes_wanted {
        Some(true) if mask.is_empty() => {
            return Err(invalid(format!("mode {} needs nodes", p.mode())))
        }
        Some(false) if !mask.is_empty() => {
            return Err(invalid(format!("mode {} takes no nodes", p.mode())))
        }
        _ => {}
    }
    Ok(Policy {
        mode: mode | flags,
        mask,
    })
}

/// Set the calling process's memory policy.
pub fn apply(p: &Policy) -> Result<()> {
    // maxnode counts one bit more than the mask holds: the kernel reads maxnode - 1 bits.
    let maxnode = p.mask.len() * 64 + 1;
    let ptr = if p.mask.is_empty() {
        std::ptr::null()
    } else {
        p.mask.as_ptr()
    };
    // SAFETY: set_mempolicy with a mask we own of the length we pass.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, p.mode, ptr, maxnode) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EINVAL) {
            " (a node that does not exist, or a mode or flag this kernel lacks: MPOL_PREFERRED_MANY needs Linux 5.15, MPOL_F_NUMA_BALANCING 5.12, MPOL_WEIGHTED_INTERLEAVE 6.9)"
        } else {
            ""
        };
        return Err(Error::Unsupported(format!(
            "cannot set linux.memoryPolicy: {e}{hint}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> Result<Policy> {
        parse(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn nodes_and_modes_are_checked() {
        let p = policy(serde_json::json!({"mode": "MPOL_BIND", "nodes": "0-2,65"})).unwrap();
        assert_eq!(p.mode, 2);
        assert_eq!(p.mask, vec![0b111, 0b10]);
        let p = policy(serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "1",
            "flags": ["MPOL_F_STATIC_NODES"]}))
        .unwrap();
        assert_eq!(p.mode, 3 | 1 << 15);
        assert!(policy(serde_json::json!({"mode": "MPOL_BIND"})).is_err());
        assert!(policy(serde_json::json!({"mode": "MPOL_LOCAL", "nodes": "0"})).is_err());
        assert!(policy(serde_json::json!({"mode": "MPOL_BIND", "nodes": "3-1"})).is_err());
        assert!(policy(serde_json::json!({"mode": "MPOL_BIND", "nodes": "x"})).is_err());
        assert!(policy(serde_json::json!({"mode": "MPOL_PREFERRED"})).is_ok());
    }
}
