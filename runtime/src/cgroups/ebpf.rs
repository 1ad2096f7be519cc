//! cgroup v2 has no devices.allow: device access is decided by an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup. This module compiles the device rules
//! into such a program (the last matching rule decides, nothing matching is denied), loads it,
//! attaches it, and detaches whatever program it replaces.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::DeviceRule;
use crate::error::{Error, Result};

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_mask(access: &str) -> i32 {
    access.chars().fold(0, |m, c| {
        m | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// The program for `rules`. Registers: r2 device type, r3 requested access, r4 major, r5 minor
/// (from struct bpf_cgroup_dev_ctx {access_type = access << 16 | type, major, minor}).
pub fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // Later rules override earlier ones: test them last-first, the first match decides.
    for rule in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Each check jumps to the end of this block when the rule does not match; the offset
        // is patched once the block's length is known (the marker is off == i16::MIN).
        let skip = |code: u8, dst: u8, imm: i32| insn(code, dst, 0, i16::MIN, imm);
        match rule.typ {
            'c' => block.push(skip(JMP_JNE_K, 2, DEV_CHAR)),
            'b' => block.push(skip(JMP_JNE_K, 2, DEV_BLOCK)),
            _ => {}
        }
        let mask = access_mask(&rule.access);
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            if rule.allow {
                // Allow only when every requested access is in the rule.
                block.push(insn(ALU32_AND_K, 1, 0, 0, !mask & 0xffff));
                block.push(skip(JMP_JNE_K, 1, 0));
            } else {
                // Deny as soon as any requested access is in the rule.
                block.push(insn(ALU32_AND_K, 1, 0, 0, mask));
                block.push(skip(JMP_JEQ_K, 1, 0));
            }
        }
        if let Some(major) = rule.major {
            block.push(skip(JMP_JNE_K, 4, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(skip(JMP_JNE_K, 5, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let mut conditional = false;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.off == i16::MIN {
                ins.off = (len - i - 1) as i16;
                conditional = true;
            }
        }
        prog.extend(block);
        // A rule that matches everything ends the program: the verifier refuses code after it.
        if !conditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// union bpf_attr, as large as any command here needs; unused bytes stay zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a zero-padded attribute buffer of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = CString::new("Apache-2.0").unwrap_or_default();
    let mut attr = Attr::new();
    attr.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE)
        .u32_at(4, prog.len() as u32)
        .u64_at(8, prog.as_ptr() as u64)
        .u64_at(16, license.as_ptr() as u64);
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: the kernel returned a new program fd.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    // Load again with the verifier's log, only to say why it refused.
    let mut log = vec![0u8; 64 * 1024];
    attr.u32_at(24, 1)
        .u32_at(28, log.len() as u32)
        .u64_at(32, log.as_mut_ptr() as u64);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: the kernel returned a new program fd.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            let first = text
                .trim_matches(char::from(0))
                .lines()
                .collect::<Vec<_>>()
                .join(" | ");
            Err(Error::io(
                format!("cannot load the eBPF device filter ({first})"),
                e,
            ))
        }
    }
}

/// Ids of the device programs attached to the cgroup at `cg`.
pub fn attached(cg: RawFd) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::new();
    attr.u32_at(0, cg as u32)
        .u32_at(4, BPF_CGROUP_DEVICE)
        .u64_at(16, ids.as_mut_ptr() as u64)
        .u32_at(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = attr.read_u32(24) as usize;
    ids.truncate(n.min(64));
    Ok(ids)
}

/// Attach the program for `rules` to the cgroup `dir`, then detach the ones it replaces.
pub fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    // In a user namespace bpf(2) is the host root's alone. runc skips the program there too:
    // the namespace's root can make no device node, and its mounts are nodev.
    let prog = match load(&compile(rules)) {
        Ok(p) => p,
        Err(_) if husk_sys::in_user_namespace() => return Ok(()),
        Err(e) => return Err(e),
    };
    let cg: OwnedFd = std::fs::File::open(dir)
        .map_err(|e| Error::io(format!("cannot open cgroup {}", dir.display()), e))?
        .into();
    let old = attached(cg.as_raw_fd()).unwrap_or_default();
    let mut attr = Attr::new();
    attr.u32_at(0, cg.as_raw_fd() as u32)
        .u32_at(4, prog.as_raw_fd() as u32)
        .u32_at(8, BPF_CGROUP_DEVICE)
        .u32_at(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        Error::io(
            format!("cannot attach the eBPF device filter to {}", dir.display()),
            e,
        )
    })?;
    for id in old {
        let mut get = Attr::new();
        get.u32_at(0, id);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut get) else {
            continue;
        };
        // SAFETY: a new fd from the kernel.
        let old_fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut det = Attr::new();
        det.u32_at(0, cg.as_raw_fd() as u32)
            .u32_at(4, old_fd.as_raw_fd() as u32)
            .u32_at(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut det).map_err(|e| {
            Error::io(
                format!("cannot detach the old device filter of {}", dir.display()),
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, s: &str) -> DeviceRule {
        DeviceRule::parse_default(allow, s)
    }

    /// Run the program on one request in a tiny interpreter of the opcodes we emit.
    fn eval(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = ((r[dst] as u32) & (i.imm as u32)) as i64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as i64,
                ALU32_MOV_X => r[dst] = (r[src] as u32) as i64,
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                JMP_JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc += i.off as usize
                    }
                }
                JMP_JEQ_K => {
                    if r[dst] == i64::from(i.imm) {
                        pc += i.off as usize
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_decides_and_default_is_deny() {
        let rules = vec![
            rule(false, "a *:* rwm"),
            rule(true, "c 1:3 rwm"),
            rule(true, "c 136:* rw"),
            rule(false, "c 1:3 w"),
        ];
        let p = compile(&rules);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "read /dev/null");
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "write denied by the last rule"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            0,
            "rw includes the denied w"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7),
            1,
            "any pts"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "mknod not granted for pts"
        );
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 254, 0), 0, "the disk");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 1, 3), 0, "type matters");
        assert_eq!(
            eval(&compile(&[]), DEV_CHAR, ACC_READ, 1, 3),
            0,
            "no rules: deny"
        );
        assert_eq!(
            eval(
                &compile(&[rule(true, "a *:* rwm")]),
                DEV_BLOCK,
                ACC_WRITE,
                8,
                0
            ),
            1
        );
        // Nothing follows a rule that matches everything (the verifier rejects dead code).
        let p = compile(&[rule(true, "c 1:3 r"), rule(false, "a *:* rwm")]);
        assert_eq!(p.last().map(|i| i.code), Some(JMP_EXIT));
        assert_eq!(p.iter().filter(|i| i.code == JMP_EXIT).count(), 1);
    }
}
