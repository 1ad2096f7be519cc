//! Seccomp from the OCI spec, compiled to classic BPF in Rust (no libseccomp, nothing to cache:
//! compiling docker's profile takes microseconds) and installed just before `execve`.
//!
//! Semantics follow libseccomp as runc uses it: rules are tried in order and the first whose
//! syscall and argument conditions match decides; syscalls this architecture does not have are
//! skipped (profiles list syscalls of every architecture); a call from another architecture or
//! ABI than the native one gets the default action.

use std::str::FromStr;

use oci_spec::runtime::{
    Arch as LinuxSeccompArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::error::{Error, Result};

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const LD_MEM: u16 = 0x60; // BPF_LD | BPF_W | BPF_MEM: A = M[k]
const LD_IMM: u16 = 0x00; // BPF_LD | BPF_W | BPF_IMM: A = k
const ST: u16 = 0x02; // BPF_ST: M[k] = A
/// The scratch slot holding the syscall number (x32's bit cleared) while a section runs.
const M_NR: u32 = 0;
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(i: usize) -> u32 {
    16 + 8 * i as u32
}
fn off_arg_hi(i: usize) -> u32 {
    off_arg_lo(i) + 4
}

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscalls arrive with the x86_64 audit arch and this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
const FLAG_TSYNC: u32 = 1;
pub const FLAG_LOG: u32 = 2;
pub const FLAG_SPEC_ALLOW: u32 = 4;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

fn ret_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    use LinuxSeccompAction::*;
    // The spec: errnoRet with any other action is an error, not a value to drop.
    if errno.is_some() && !matches!(action, ScmpActErrno | ScmpActTrace) {
        return Err(Error::InvalidConfig(format!(
            "seccomp errnoRet is set for {action:?}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one"
        )));
    }
    Ok(match action {
        ScmpActKill | ScmpActKillThread => RET_KILL_THREAD,
        ScmpActKillProcess => RET_KILL_PROCESS,
        ScmpActTrap => RET_TRAP,
        ScmpActErrno => RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActTrace => RET_TRACE | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActLog => RET_LOG,
        ScmpActAllow => RET_ALLOW,
        ScmpActNotify => RET_USER_NOTIF,
    })
}

/// A compiled filter and the flags to install it with.
#[derive(Debug)]
pub struct Filter {
    pub program: Vec<SockFilter>,
    pub flags: u32,
    /// Set when the profile notifies (SCMP_ACT_NOTIFY): where the listener fd goes.
    pub notify: Option<Notify>,
}

/// The seccomp agent of a profile with SCMP_ACT_NOTIFY: its socket and the metadata it gets.
#[derive(Debug, Clone)]
pub struct Notify {
    pub listener_path: std::path::PathBuf,
    pub metadata: String,
}

/// The checks of one argument condition. Each failing check jumps to `fail` (an index counted
/// from the start of the returned block, patched by the caller through `Pending`).
fn condition(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
) -> Vec<(SockFilter, Pending)> {
    use LinuxSeccompOperator::*;
    let (hi, lo) = ((value >> 32) as u32, value as u32);
    let mut v = Vec::new();
    let ld = |off| (stmt(LD_W_ABS, off), Pending::None);
    match op {
        ScmpCmpEq | ScmpCmpNe => {
            // EQ: hi == vhi && lo == vlo. NE is its negation.
            let eq = op == ScmpCmpEq;
            v.push(ld(off_arg_hi(index)));
            if eq {
                v.push((jump(JEQ_K, hi, 0, 0), Pending::JfFail));
            } else {
                v.push((jump(JEQ_K, hi, 0, 0), Pending::JfPass));
            }
            v.push(ld(off_arg_lo(index)));
            if eq {
                v.push((jump(JEQ_K, lo, 0, 0), Pending::JfFail));
            } else {
                v.push((jump(JEQ_K, lo, 0, 0), Pending::JtFail));
            }
            v.push((stmt(JA, 0), Pending::Pass));
        }
        ScmpCmpMaskedEq => {
            let (mhi, mlo) = ((value >> 32) as u32, value as u32);
            let (vhi, vlo) = ((value_two >> 32) as u32, value_two as u32);
            v.push(ld(off_arg_hi(index)));
            v.push((stmt(ALU_AND_K, mhi), Pending::None));
            v.push((jump(JEQ_K, vhi, 0, 0), Pending::JfFail));
            v.push(ld(off_arg_lo(index)));
            v.push((stmt(ALU_AND_K, mlo), Pending::None));
            v.push((jump(JEQ_K, vlo, 0, 0), Pending::JfFail));
            v.push((stmt(JA, 0), Pending::Pass));
        }
        ScmpCmpGt | ScmpCmpGe | ScmpCmpLt | ScmpCmpLe => {
            // x > v  <=>  hi > vhi || (hi == vhi && lo > vlo); ">=" with lo >= vlo.
            // x < v is !(x >= v); x <= v is !(x > v).
            let (lo_op, negate) = match op {
                ScmpCmpGt => (JGT_K, false),
                ScmpCmpGe => (JGE_K, false),
                ScmpCmpLt => (JGE_K, true),
                _ => (JGT_K, true),
            };
            let (yes, no) = if negate {
                (Pending::JtFail, Pending::JfPass)
            } else {
                (Pending::JtPass, Pending::JfFail)
            };
            v.push(ld(off_arg_hi(index)));
            v.push((jump(JGT_K, hi, 0, 0), yes_only(&yes)));
            v.push((jump(JEQ_K, hi, 0, 0), no_only(&no)));
            v.push(ld(off_arg_lo(index)));
            v.push((jump(lo_op, lo, 0, 0), both(&yes, &no)));
        }
    }
    v
}

/// Where a jump of a condition goes, resolved once block positions are known.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    None,
    /// jf → fail (jt falls through)
    JfFail,
    /// jt → fail (jf falls through)
    JtFail,
    /// jf → pass (the next condition)
    JfPass,
    /// jt → pass
    JtPass,
    /// jt → pass, jf → fail
    JtPassJfFail,
    /// jt → fail, jf → pass
    JtFailJfPass,
    /// unconditional jump to pass
    Pass,
}

fn yes_only(p: &Pending) -> Pending {
    match p {
        Pending::JtPass => Pending::JtPass,
        _ => Pending::JtFail,
    }
}
fn no_only(p: &Pending) -> Pending {
    match p {
        Pending::JfFail => Pending::JfFail,
        _ => Pending::JfPass,
    }
}
fn both(yes: &Pending, _no: &Pending) -> Pending {
    match yes {
        Pending::JtPass => Pending::JtPassJfFail,
        _ => Pending::JtFailJfPass,
    }
}

/// One argument condition: (index, operator, value, valueTwo).
type Cond = (usize, LinuxSeccompOperator, u64, u64);

fn rel(from: usize, to: usize) -> Result<u8> {
    u8::try_from(to - from - 1)
        .map_err(|_| Error::InvalidConfig("seccomp rule is too large to compile".into()))
}

/// One rule of the profile: its action and its alternatives of argument conditions (none: the
/// rule matches on the syscall alone).
struct Rule<'a> {
    names: &'a [String],
    action: u32,
    groups: Vec<Vec<Cond>>,
}

fn rules(s: &LinuxSeccomp) -> Result<Vec<Rule<'_>>> {
    let mut out = Vec::new();
    for rule in s.syscalls().iter().flatten() {
        let action = ret_value(rule.action(), rule.errno_ret())?;
        let mut by_index: Vec<Cond> = Vec::new();
        for a in rule.args().iter().flatten() {
            if a.index() > 5 {
                return Err(Error::InvalidConfig(format!(
                    "seccomp argument index {} is above 5",
                    a.index()
                )));
            }
            // An absent valueTwo is 0: Go clients drop zero values (`omitempty`), and
            // containerd's default profile masks clone flags this way.
            by_index.push((a.index(), a.op(), a.value(), a.value_two().unwrap_or(0)));
        }
        // Conditions on different arguments must all hold; several conditions on the same
        // argument are alternatives (libseccomp and runc make each its own rule).
        let repeated = {
            let mut seen = std::collections::HashSet::new();
            by_index.iter().any(|(i, ..)| !seen.insert(*i))
        };
        let groups: Vec<Vec<Cond>> = if by_index.is_empty() {
            Vec::new()
        } else if repeated {
            by_index.iter().map(|c| vec![*c]).collect()
        } else {
            vec![by_index]
        };
        out.push(Rule {
            names: rule.names(),
            action,
            groups,
        });
    }
    Ok(out)
}

/// `JEQ nr; conditions (each jumps to FAIL or on to the next one); RET action; FAIL: LD M[nr]`
/// (the number as the section saw it, x32's bit cleared).
fn emit_group(p: &mut Vec<SockFilter>, nr: u32, conds: &[Cond], action: u32) -> Result<()> {
    let mut block: Vec<(SockFilter, Pending)> = Vec::new();
    let mut cond_ends = Vec::new();
    for (i, op, v, v2) in conds {
        block.extend(condition(*i, *op, *v, *v2));
        cond_ends.push(block.len());
    }
    let start = p.len();
    let jeq_at = start;
    let body_start = start + 1;
    let ret_at = body_start + block.len();
    let fail_at = ret_at + 1;
    p.push(jump(JEQ_K, nr, 0, rel(jeq_at, fail_at)?));
    let mut cond_idx = 0;
    for (k, (mut ins, pending)) in block.into_iter().enumerate() {
        let at = body_start + k;
        while k >= cond_ends[cond_idx] {
            cond_idx += 1;
        }
        let pass_at = body_start + cond_ends[cond_idx];
        match pending {
            Pending::None => {}
            Pending::JfFail => ins.jf = rel(at, fail_at)?,
            Pending::JtFail => ins.jt = rel(at, fail_at)?,
            Pending::JfPass => ins.jf = rel(at, pass_at)?,
            Pending::JtPass => ins.jt = rel(at, pass_at)?,
            Pending::JtPassJfFail => {
                ins.jt = rel(at, pass_at)?;
                ins.jf = rel(at, fail_at)?;
            }
            Pending::JtFailJfPass => {
                ins.jt = rel(at, fail_at)?;
                ins.jf = rel(at, pass_at)?;
            }
            Pending::Pass => ins.k = (pass_at - at - 1) as u32,
        }
        p.push(ins);
    }
    p.push(stmt(RET_K, action));
    p.push(stmt(LD_MEM, M_NR));
    Ok(())
}

/// One syscall number's rules: the (action, conditions) groups to try in order, and the
/// action of its first rule without conditions.
type NrRules = (Vec<(u32, Vec<Cond>)>, Option<u32>);

/// What one syscall number (or a run of them) gets: an action outright, or its rules'
/// condition groups in profile order, then the action of its first rule without conditions
/// (or the default).
#[derive(Clone, PartialEq)]
enum Block {
    Ret(u32),
    Checks(u32, Vec<(u32, Vec<Cond>)>, u32),
}

/// The profile's rules for one ABI, `lookup` giving its syscall numbers, as a binary search
/// over the syscall number (libseccomp builds the same shape): a syscall costs about ten
/// comparisons, not a walk through hundreds of rules. Every path ends in a RET. The first
/// rule that matches decides, as in libseccomp.
fn emit_rules(
    p: &mut Vec<SockFilter>,
    s: &LinuxSeccomp,
    lookup: &dyn Fn(&str) -> Option<u32>,
    default: u32,
) -> Result<()> {
    let rules = rules(s)?;
    // Per syscall number, its rules in order, up to the first without conditions.
    let mut per_nr: std::collections::BTreeMap<u32, NrRules> = Default::default();
    for r in &rules {
        for name in r.names {
            let Some(nr) = lookup(name) else {
                continue;
            };
            let entry = per_nr.entry(nr).or_default();
            if entry.1.is_some() {
                continue; // an earlier rule always matches
            }
            if r.groups.is_empty() {
                entry.1 = Some(r.action);
            } else {
                for g in &r.groups {
                    entry.0.push((r.action, g.clone()));
                }
            }
        }
    }
    // Segments covering every number, from 0 up: (first number, block).
    let mut segs: Vec<(u32, Block)> = vec![(0, Block::Ret(default))];
    for (nr, (checks, always)) in per_nr {
        let block = if checks.is_empty() {
            Block::Ret(always.unwrap_or(default))
        } else {
            Block::Checks(nr, checks, always.unwrap_or(default))
        };
        // The number after the previous one starts a default segment: this one replaces it.
        if segs.last().is_some_and(|(lo, _)| *lo == nr) {
            segs.pop();
        }
        segs.push((nr, block));
        if let Some(after) = nr.checked_add(1) {
            segs.push((after, Block::Ret(default)));
        }
    }
    // Runs of the same outright action merge.
    let mut merged: Vec<(u32, Block)> = Vec::new();
    for (lo, b) in segs {
        match merged.last() {
            Some((_, prev)) if *prev == b && matches!(b, Block::Ret(_)) => {}
            _ => merged.push((lo, b)),
        }
    }
    emit_tree(p, &merged)
}

fn emit_tree(p: &mut Vec<SockFilter>, segs: &[(u32, Block)]) -> Result<()> {
    if segs.len() == 1 {
        match &segs[0].1 {
            Block::Ret(a) => p.push(stmt(RET_K, *a)),
            Block::Checks(nr, checks, otherwise) => {
                for (action, conds) in checks {
                    emit_group(p, *nr, conds, *action)?;
                }
                p.push(stmt(RET_K, *otherwise));
            }
        }
        return Ok(());
    }
    // A >= k: the right half; else the left half, which follows inline. The jump over the left
    // half is the JGE's own when it fits in its 8 bits, else a JA (32 bits): most nodes are
    // near the leaves, so the tree is a third shorter than with a JA at every node, and the
    // kernel's checking, conversion and JIT at each start are as much shorter. Every jump in a
    // subtree is relative and stays inside it, so a JA can be slid in before one.
    let mid = segs.len() / 2;
    let at = p.len();
    p.push(jump(JGE_K, segs[mid].0, 0, 0));
    emit_tree(p, &segs[..mid])?;
    let left = p.len() - at - 1;
    match u8::try_from(left) {
        Ok(n) => p[at].jt = n,
        Err(_) => {
            p[at].jf = 1;
            p.insert(at + 1, stmt(JA, left as u32));
        }
    }
    emit_tree(p, &segs[mid..])
}

/// x32's own syscall numbers (without the x32 bit) and the calls they are: the compat entry
/// points of arch/x86/entry/syscalls/syscall_64.tbl, which x32 uses instead of the x86_64
/// numbers of the same names (those are 64-bit only, ENOSYS for x32).
const X32_ONLY: [(u32, &str); 36] = [
    (512, "rt_sigaction"),
    (513, "rt_sigreturn"),
    (514, "ioctl"),
    (515, "readv"),
    (516, "writev"),
    (517, "recvfrom"),
    (518, "sendmsg"),
    (519, "recvmsg"),
    (520, "execve"),
    (521, "ptrace"),
    (522, "rt_sigpending"),
    (523, "rt_sigtimedwait"),
    (524, "rt_sigqueueinfo"),
    (525, "sigaltstack"),
    (526, "timer_create"),
    (527, "mq_notify"),
    (528, "kexec_load"),
    (529, "waitid"),
    (530, "set_robust_list"),
    (531, "get_robust_list"),
    (532, "vmsplice"),
    (533, "move_pages"),
    (534, "preadv"),
    (535, "pwritev"),
    (536, "rt_tgsigqueueinfo"),
    (537, "recvmmsg"),
    (538, "sendmmsg"),
    (539, "process_vm_readv"),
    (540, "process_vm_writev"),
    (541, "setsockopt"),
    (542, "getsockopt"),
    (543, "io_setup"),
    (544, "io_submit"),
    (545, "execveat"),
    (546, "preadv2"),
    (547, "pwritev2"),
];

/// Does this kernel run x32 calls? Most kernels are built without the ABI or boot with it
/// off (`syscall.x32=n`): then every x32 call fails with ENOSYS whatever a filter says.
fn x32_runs_here() -> bool {
    static RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RUNS.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            // SAFETY: getpid through the x32 entry point: no arguments, no side effects.
            && unsafe { libc::syscall(libc::c_long::from(X32_SYSCALL_BIT as i32) | 39) } > 0
    })
}

pub fn compile(s: &LinuxSeccomp) -> Result<Filter> {
    compile_for(s, x32_runs_here())
}

/// `compile`, for a kernel that runs x32 calls or not.
fn compile_for(s: &LinuxSeccomp, x32_runs: bool) -> Result<Filter> {
    let default = ret_value(s.default_action(), s.default_errno_ret())?;
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    let uses_notify = s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    let notify = if uses_notify {
        let path = s.listener_path().clone().ok_or_else(|| {
            Error::InvalidConfig("seccomp SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into())
        })?;
        flags |= FLAG_NEW_LISTENER;
        Some(Notify {
            listener_path: path,
            metadata: s.listener_metadata().clone().unwrap_or_default(),
        })
    } else {
        None
    };

    // Calls of another ABI than the native one are described by their own syscall numbers:
    // the profile's `architectures` decide which pass (on x86_64: i386 with a section on its
    // own table; x32 through the native rules, below). A call of an ABI not listed gets the
    // default action; with an allow-by-default profile it is killed instead, so it cannot
    // slip past the deny rules (libseccomp's bad-arch action).
    let foreign = match s.default_action() {
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog => RET_KILL_PROCESS,
        _ => default,
    };
    let arches: Vec<LinuxSeccompArch> = s.architectures().clone().unwrap_or_default();
    let with_i386 = cfg!(target_arch = "x86_64") && arches.contains(&LinuxSeccompArch::ScmpArchX86);
    let with_x32 = cfg!(target_arch = "x86_64") && arches.contains(&LinuxSeccompArch::ScmpArchX32);
    // Dispatch on the audit arch; sections are reached with JA (their offsets exceed a jt/jf).
    let mut p = vec![stmt(LD_W_ABS, OFF_ARCH)];
    let native_ja = {
        p.push(jump(JEQ_K, NATIVE_ARCH, 0, 1));
        p.push(stmt(JA, 0));
        p.len() - 1
    };
    let i386_ja = with_i386.then(|| {
        p.push(jump(JEQ_K, AUDIT_ARCH_I386, 0, 1));
        p.push(stmt(JA, 0));
        p.len() - 1
    });
    p.push(stmt(RET_K, foreign));
    let patch = |p: &mut Vec<SockFilter>, at: usize| {
        let target = p.len();
        p[at].k = (target - at - 1) as u32;
    };
    patch(&mut p, native_ja);
    p.push(stmt(LD_W_ABS, OFF_NR));
    // x32 calls (nr | 0x40000000) arrive with the x86_64 audit arch and use x86_64's numbers
    // for most calls. With x32 listed, the bit is cleared and the call goes through the native
    // rules, which is what a section of its own with every number plus the bit would decide,
    // in a third fewer instructions. x32's own numbers (512-547) are renamed to the x86_64
    // numbers of their calls first, so that a rule on execve also holds x32's execve; only
    // where the kernel runs x32 calls at all, and only for calls the profile names.
    if cfg!(target_arch = "x86_64") {
        let x32: Vec<SockFilter> = if with_x32 {
            let mut block = vec![stmt(ALU_AND_K, !X32_SYSCALL_BIT)];
            let renames: Vec<(u32, u32)> = if x32_runs {
                let named: std::collections::HashSet<&str> = s
                    .syscalls()
                    .iter()
                    .flatten()
                    .flat_map(|r| r.names().iter().map(String::as_str))
                    .collect();
                X32_ONLY
                    .iter()
                    .filter(|(_, n)| named.contains(n))
                    .filter_map(|(x, n)| {
                        let native = syscalls::Sysno::from_str(n).ok()?.id() as u32;
                        Some((*x, native))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if !renames.is_empty() {
                // A >= 512: JEQ x, LD #native, JA end for each; below 512 the chain is skipped.
                let len = 3 * renames.len();
                block.push(jump(JGE_K, X32_ONLY[0].0, 0, rel(0, len + 1)?));
                for (i, (x, native)) in renames.iter().enumerate() {
                    block.push(jump(JEQ_K, *x, 0, 2));
                    block.push(stmt(LD_IMM, *native));
                    block.push(stmt(JA, (3 * (renames.len() - 1 - i)) as u32));
                }
            }
            block
        } else {
            vec![stmt(RET_K, foreign)]
        };
        p.push(jump(JGE_K, X32_SYSCALL_BIT, 0, rel(0, x32.len() + 1)?));
        p.extend(x32);
    }
    p.push(stmt(ST, M_NR));
    emit_rules(
        &mut p,
        s,
        &|name| syscalls::Sysno::from_str(name).ok().map(|n| n.id() as u32),
        default,
    )?;
    if let Some(at) = i386_ja {
        patch(&mut p, at);
        p.push(stmt(LD_W_ABS, OFF_NR));
        p.push(stmt(ST, M_NR));
        emit_rules(
            &mut p,
            s,
            &|name| {
                syscalls::x86::Sysno::from_str(name)
                    .ok()
                    .map(|n| n.id() as u32)
            },
            default,
        )?;
    }
    if p.len() > 4096 {
        return Err(Error::InvalidConfig(format!(
            "the seccomp profile compiles to {} instructions, above the kernel's 4096",
            p.len()
        )));
    }
    Ok(Filter {
        program: p,
        flags,
        notify,
    })
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Install the filter on the calling process (seccomp(2), SECCOMP_SET_MODE_FILTER); with
/// SCMP_ACT_NOTIFY in the profile, the listener fd the kernel returns.
pub fn install(f: &Filter) -> Result<Option<std::os::fd::OwnedFd>> {
    let prog = SockFprog {
        len: f.program.len() as u16,
        filter: f.program.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    // SAFETY: seccomp(2) with a program that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            f.flags,
            &prog as *const SockFprog,
        )
    };
    if rc < 0 {
        return Err(Error::io(
            "cannot install the seccomp filter",
            std::io::Error::last_os_error(),
        ));
    }
    if f.flags & FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the return value is a new fd of ours.
        return Ok(Some(unsafe {
            std::os::fd::FromRawFd::from_raw_fd(rc as i32)
        }));
    }
    Ok(None)
}

/// Connect to the seccomp agent's socket (while its path is still reachable: before the
/// container's root replaces ours).
pub fn connect_agent(f: &Filter) -> Result<Option<std::os::unix::net::UnixStream>> {
    match &f.notify {
        None => Ok(None),
        Some(n) => std::os::unix::net::UnixStream::connect(&n.listener_path)
            .map(Some)
            .map_err(|e| {
                Error::io(
                    format!(
                        "cannot connect to the seccomp agent at {}",
                        n.listener_path.display()
                    ),
                    e,
                )
            }),
    }
}

/// Hand the listener fd to the agent, as the runtime spec says: one message whose data is the
/// ContainerProcessState JSON and whose SCM_RIGHTS carry the fd named in its "fds".
pub fn send_listener(
    agent: &std::os::unix::net::UnixStream,
    listener: std::os::fd::OwnedFd,
    f: &Filter,
    pid: i32,
    state_json: &str,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let state: serde_json::Value = serde_json::from_str(state_json).unwrap_or_default();
    let msg = serde_json::json!({
        "ociVersion": state["ociVersion"],
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": f.notify.as_ref().map(|n| n.metadata.clone()).unwrap_or_default(),
        "state": state,
    })
    .to_string();
    let fds = [listener.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        agent.as_raw_fd(),
        &[std::io::IoSlice::new(msg.as_bytes())],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::sys("cannot send the seccomp listener to the agent", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_ret_on_an_action_without_one_is_an_error() {
        let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]
        }))
        .unwrap();
        let err = compile(&profile).unwrap_err().to_string();
        assert!(err.contains("errnoRet"), "{err}");
    }

    /// Run a compiled program over one seccomp_data in a tiny interpreter.
    fn eval(p: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let word =
            |off: u32| u32::from_ne_bytes(data[off as usize..off as usize + 4].try_into().unwrap());
        let (mut a, mut pc) = (0u32, 0usize);
        let mut mem: [Option<u32>; 16] = [None; 16];
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = word(i.k),
                ALU_AND_K => a &= i.k,
                ST => mem[i.k as usize] = Some(a),
                LD_IMM => a = i.k,
                LD_MEM => a = mem[i.k as usize].expect("M[k] is stored before it is loaded"),
                JA => pc += i.k as usize,
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                JGT_K => pc += if a > i.k { i.jt } else { i.jf } as usize,
                JGE_K => pc += if a >= i.k { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn profile(v: serde_json::Value) -> Filter {
        compile(&serde_json::from_value(v).expect("profile parses")).expect("compiles")
    }

    fn nr(name: &str) -> u32 {
        syscalls::Sysno::from_str(name).unwrap().id() as u32
    }

    #[test]
    fn actions_and_default() {
        let f = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["read", "write", "not_a_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        }));
        let e = |n: &str| eval(&f.program, NATIVE_ARCH, nr(n), [0; 6]);
        assert_eq!(e("read"), RET_ALLOW);
        assert_eq!(e("mkdir"), RET_ERRNO | 13);
        assert_eq!(e("reboot"), RET_KILL_PROCESS);
        assert_eq!(e("getpid"), RET_ERRNO | 38, "default action with its errno");
        assert_eq!(
            eval(&f.program, 0x4000_0003, nr("read"), [0; 6]),
            RET_ERRNO | 38,
            "other arch"
        );
        assert_eq!(
            eval(
                &f.program,
                NATIVE_ARCH,
                nr("read") | X32_SYSCALL_BIT,
                [0; 6]
            ),
            RET_ERRNO | 38,
            "x32"
        );
    }

    #[test]
    fn argument_operators_compare_all_64_bits() {
        let rule = |op: &str, value: u64| {
            profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": value, "op": op}]}]
            }))
        };
        let big = 0x1_0000_0005u64;
        type Case = (&'static str, u64, Vec<(u64, bool)>);
        let cases: Vec<Case> = vec![
            (
                "SCMP_CMP_EQ",
                big,
                vec![(big, true), (5, false), (0x2_0000_0005, false)],
            ),
            (
                "SCMP_CMP_NE",
                big,
                vec![(big, false), (5, true), (0x1_0000_0006, true)],
            ),
            (
                "SCMP_CMP_GT",
                big,
                vec![
                    (big + 1, true),
                    (big, false),
                    (0x2_0000_0000, true),
                    (0xffff_ffff, false),
                ],
            ),
            (
                "SCMP_CMP_GE",
                big,
                vec![(big, true), (big - 1, false), (0x2_0000_0000, true)],
            ),
            (
                "SCMP_CMP_LT",
                big,
                vec![
                    (big - 1, true),
                    (big, false),
                    (0xffff_ffff, true),
                    (0x2_0000_0000, false),
                ],
            ),
            (
                "SCMP_CMP_LE",
                big,
                vec![(big, true), (big + 1, false), (3, true)],
            ),
        ];
        for (op, value, checks) in cases {
            let f = rule(op, value);
            for (arg, denied) in checks {
                let got = eval(
                    &f.program,
                    NATIVE_ARCH,
                    nr("personality"),
                    [arg, 0, 0, 0, 0, 0],
                );
                assert_eq!(
                    got == (RET_ERRNO | 1),
                    denied,
                    "{op} {value:#x} vs {arg:#x}"
                );
            }
        }
        let f = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 0x7E020000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
        }));
        // Docker's clone rule: refused unless a namespace flag is set... here inverted: ERRNO
        // when no namespace flag is set.
        assert_eq!(
            eval(&f.program, NATIVE_ARCH, nr("clone"), [0x11, 0, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            eval(
                &f.program,
                NATIVE_ARCH,
                nr("clone"),
                [0x2000_0000, 0, 0, 0, 0, 0]
            ),
            RET_ALLOW
        );
    }

    #[test]
    fn rules_are_tried_in_order_and_conditions_are_anded() {
        let f = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        }));
        let e =
            |n: &str, a0: u64, a1: u64| eval(&f.program, NATIVE_ARCH, nr(n), [a0, a1, 0, 0, 0, 0]);
        assert_eq!(e("personality", 0, 0), RET_ALLOW);
        assert_eq!(
            e("personality", 8, 0),
            RET_ALLOW,
            "the second rule for the same syscall"
        );
        assert_eq!(e("personality", 4, 0), RET_ERRNO | 1);
        assert_eq!(e("socket", 1, 1), RET_ALLOW);
        assert_eq!(
            e("socket", 1, 2),
            RET_ERRNO | 1,
            "both conditions must hold"
        );
        assert_eq!(e("socket", 2, 1), RET_ERRNO | 1);
    }

    #[test]
    fn repeated_conditions_on_one_argument_are_alternatives() {
        let f = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
        }));
        let e = |a0: u64| {
            eval(
                &f.program,
                NATIVE_ARCH,
                nr("personality"),
                [a0, 0, 0, 0, 0, 0],
            )
        };
        assert_eq!(e(0), RET_ALLOW);
        assert_eq!(e(8), RET_ALLOW);
        assert_eq!(e(4), RET_ERRNO | 1);
    }

    #[test]
    fn notify_needs_a_listener_path() {
        let s: LinuxSeccomp =
            serde_json::from_value(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}))
                .unwrap();
        assert!(compile(&s)
            .unwrap_err()
            .to_string()
            .contains("listenerPath"));
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        let f = compile(&s).unwrap();
        assert!(f.notify.is_some() && f.flags & FLAG_NEW_LISTENER != 0);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn listed_architectures_get_their_own_syscall_numbers() {
        const MKDIR_I386: u32 = 39;
        const GETPID_I386: u32 = 20;
        const MKDIR_X86_64: u32 = 83;
        let eperm = RET_ERRNO | 1;
        let rules =
            serde_json::json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]);
        let all = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}));
        let p = &all.program;
        assert_eq!(eval(p, NATIVE_ARCH, MKDIR_X86_64, [0; 6]), eperm);
        assert_eq!(eval(p, AUDIT_ARCH_I386, MKDIR_I386, [0; 6]), eperm);
        assert_eq!(eval(p, AUDIT_ARCH_I386, GETPID_I386, [0; 6]), RET_ALLOW);
        // i386's 83 is symlink, not mkdir.
        assert_eq!(eval(p, AUDIT_ARCH_I386, MKDIR_X86_64, [0; 6]), RET_ALLOW);
        assert_eq!(
            eval(p, NATIVE_ARCH, MKDIR_X86_64 | X32_SYSCALL_BIT, [0; 6]),
            eperm
        );
        assert_eq!(
            eval(p, NATIVE_ARCH, 39 | X32_SYSCALL_BIT, [0; 6]),
            RET_ALLOW
        );
        // Not listed: an allow-by-default profile kills other ABIs, a deny-by-default one
        // denies them.
        let native =
            profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        assert_eq!(
            eval(&native.program, AUDIT_ARCH_I386, GETPID_I386, [0; 6]),
            RET_KILL_PROCESS
        );
        assert_eq!(
            eval(&native.program, NATIVE_ARCH, 39 | X32_SYSCALL_BIT, [0; 6]),
            RET_KILL_PROCESS
        );
        let deny = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}));
        assert_eq!(
            eval(&deny.program, AUDIT_ARCH_I386, GETPID_I386, [0; 6]),
            RET_ALLOW
        );
        assert_eq!(
            eval(&deny.program, AUDIT_ARCH_I386, MKDIR_I386, [0; 6]),
            RET_ERRNO | 1
        );
        assert_eq!(
            eval(&deny.program, NATIVE_ARCH, 39 | X32_SYSCALL_BIT, [0; 6]),
            RET_ERRNO | 1
        );
    }

    /// The profile's meaning, evaluated directly: rules in order, the first match decides
    /// (names numbered by `nr_of`, the ABI's table).
    fn reference(
        s: &LinuxSeccomp,
        nr_of: &dyn Fn(&str) -> Option<u32>,
        nr: u32,
        args: [u64; 6],
    ) -> u32 {
        let holds = |(i, op, v, v2): &Cond| {
            let a = args[*i];
            match op {
                LinuxSeccompOperator::ScmpCmpEq => a == *v,
                LinuxSeccompOperator::ScmpCmpNe => a != *v,
                LinuxSeccompOperator::ScmpCmpLt => a < *v,
                LinuxSeccompOperator::ScmpCmpLe => a <= *v,
                LinuxSeccompOperator::ScmpCmpGt => a > *v,
                LinuxSeccompOperator::ScmpCmpGe => a >= *v,
                LinuxSeccompOperator::ScmpCmpMaskedEq => a & *v == *v2,
            }
        };
        for r in rules(s).unwrap() {
            if !r.names.iter().any(|n| nr_of(n) == Some(nr)) {
                continue;
            }
            if r.groups.is_empty() || r.groups.iter().any(|g| g.iter().all(holds)) {
                return r.action;
            }
        }
        ret_value(s.default_action(), s.default_errno_ret()).unwrap()
    }

    fn nr_of(name: &str) -> Option<u32> {
        syscalls::Sysno::from_str(name).ok().map(|n| n.id() as u32)
    }

    /// The x86_64 number of the call an x32 number makes.
    fn x32_as_native(nr: u32) -> u32 {
        X32_ONLY
            .iter()
            .find(|(x, _)| *x == nr)
            .map_or(nr, |(_, n)| nr_of(n).unwrap())
    }

    fn nr_of_i386(name: &str) -> Option<u32> {
        syscalls::x86::Sysno::from_str(name)
            .ok()
            .map(|n| n.id() as u32)
    }

    #[test]
    fn x32s_own_execve_is_held_by_a_rule_on_execve() {
        // Allow by default, deny execve and ptrace: x32 makes them as 520 and 521, not as
        // x86_64's 59 and 101. Before the renaming they fell to the default and were allowed.
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["execve", "ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap();
        let f = compile_for(&s, true).unwrap();
        for x32_nr in [520, 521] {
            assert_eq!(
                eval(&f.program, NATIVE_ARCH, x32_nr | X32_SYSCALL_BIT, [0; 6]),
                RET_ERRNO | 1
            );
        }
        let rt_sigaction = 512 | X32_SYSCALL_BIT;
        assert_eq!(
            eval(&f.program, NATIVE_ARCH, rt_sigaction, [0; 6]),
            RET_ALLOW
        );
        assert_eq!(
            eval(&f.program, NATIVE_ARCH, nr("execve"), [0; 6]),
            RET_ERRNO | 1
        );
        // Where x32 calls cannot run (ENOSYS whatever the filter says) nothing is renamed.
        let off = compile_for(&s, false).unwrap();
        assert!(off.program.len() < f.program.len());
        // The kernel's checker takes the renaming (LD #k, scratch memory) even where x32
        // is off: installed in a child that then exits.
        // SAFETY: the child only makes syscalls (prctl, seccomp) and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::_exit(if install(&f).is_ok() { 0 } else { 1 })
            },
            pid => {
                let mut status = 0;
                // SAFETY: waiting for the child forked above.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }

    #[test]
    fn a_tree_too_deep_for_8_bit_jumps_means_what_the_profile_says() {
        // Every syscall its own action (nothing merges), some with conditions: subtrees far
        // longer than a JGE's 8-bit offset, so the JA path is taken too.
        let rules: Vec<serde_json::Value> = syscalls::Sysno::iter()
            .enumerate()
            .map(|(i, n)| {
                let mut r = serde_json::json!({"names": [n.name()], "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1 + i % 7});
                if i % 5 == 0 {
                    r["args"] =
                        serde_json::json!([{"index": i % 3, "value": i, "op": "SCMP_CMP_EQ"}]);
                }
                r
            })
            .collect();
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!(
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
             "syscalls": rules}
        ))
        .unwrap();
        let f = compile_for(&s, true).unwrap();
        assert!(
            f.program.iter().any(|i| i.code == JA && i.k > 255),
            "long jumps"
        );
        for nr in 0..600u32 {
            for v in [0u64, (nr % 3) as u64, nr as u64] {
                let args = [v; 6];
                let want = reference(&s, &nr_of, nr, args);
                assert_eq!(eval(&f.program, NATIVE_ARCH, nr, args), want, "nr {nr}");
                assert_eq!(
                    eval(&f.program, NATIVE_ARCH, nr | X32_SYSCALL_BIT, args),
                    reference(&s, &nr_of, x32_as_native(nr), args),
                    "x32 nr {nr}"
                );
            }
        }
        // Numbers with other high bits (ptrace can set any): no rule, the default.
        for nr in [0x8000_0000u32, 0xbfff_ffff, 0xffff_ffff, 0x4000_0000 | 600] {
            assert_eq!(
                eval(&f.program, NATIVE_ARCH, nr, [0; 6]),
                RET_ALLOW,
                "{nr:#x}"
            );
        }
    }

    #[test]
    fn the_compiled_search_tree_means_what_the_profile_says() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let pool = [
            "read",
            "write",
            "openat",
            "mkdir",
            "personality",
            "clone",
            "socket",
            "getpid",
            "kill",
            "exit_group",
            "io_uring_setup",
            "execve",
            "ioctl",
            "ptrace",
        ];
        let ops = [
            "SCMP_CMP_EQ",
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_GT",
            "SCMP_CMP_GE",
            "SCMP_CMP_MASKED_EQ",
        ];
        let values = [
            0u64,
            1,
            2,
            8,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            0x7E02_0000,
        ];
        for _ in 0..300 {
            let mut rules = Vec::new();
            for _ in 0..1 + rnd(6) {
                let names: Vec<&str> = (0..1 + rnd(3))
                    .map(|_| pool[rnd(pool.len() as u64) as usize])
                    .collect();
                let action = match rnd(4) {
                    0 => serde_json::json!({"action": "SCMP_ACT_ALLOW"}),
                    1 => serde_json::json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 1 + rnd(40)}),
                    2 => serde_json::json!({"action": "SCMP_ACT_TRAP"}),
                    _ => serde_json::json!({"action": "SCMP_ACT_LOG"}),
                };
                let mut rule = serde_json::json!({"names": names});
                rule["action"] = action["action"].clone();
                if let Some(e) = action.get("errnoRet") {
                    rule["errnoRet"] = e.clone();
                }
                let nargs = rnd(3);
                if nargs > 0 {
                    let args: Vec<serde_json::Value> = (0..nargs)
                        .map(|_| serde_json::json!({"index": rnd(3), "op": ops[rnd(ops.len() as u64) as usize],
                            "value": values[rnd(values.len() as u64) as usize], "valueTwo": values[rnd(values.len() as u64) as usize]}))
                        .collect();
                    rule["args"] = serde_json::json!(args);
                }
                rules.push(rule);
            }
            let default = if rnd(2) == 0 {
                "SCMP_ACT_ALLOW"
            } else {
                "SCMP_ACT_ERRNO"
            };
            let arches = match rnd(3) {
                0 => serde_json::json!([]),
                1 => serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]),
                _ => serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            };
            let with_x32 = arches.as_array().is_some_and(|a| !a.is_empty());
            let with_i386 = arches.as_array().is_some_and(|a| a.len() == 3);
            let s: LinuxSeccomp = serde_json::from_value(serde_json::json!(
                {"defaultAction": default, "architectures": arches, "syscalls": rules}
            ))
            .unwrap();
            let f = compile_for(&s, false).unwrap();
            // Where the kernel runs x32 calls, x32's own numbers are renamed too.
            let f_x32 = compile_for(&s, true).unwrap();
            // An ABI without a section of its own: killed under an allow-by-default profile,
            // else the default.
            let foreign = if default == "SCMP_ACT_ALLOW" {
                RET_KILL_PROCESS
            } else {
                ret_value(s.default_action(), s.default_errno_ret()).unwrap()
            };
            for _ in 0..60 {
                let name = pool[rnd(pool.len() as u64) as usize];
                let args = [0; 6].map(|_: u64| values[rnd(values.len() as u64) as usize]);
                let nr = if rnd(5) == 0 {
                    rnd(560) as u32
                } else {
                    nr_of(name).unwrap()
                };
                assert_eq!(
                    eval(&f.program, NATIVE_ARCH, nr, args),
                    reference(&s, &nr_of, nr, args),
                    "nr {nr} args {args:?} profile {s:?}"
                );
                // x32: x86_64's numbers with the bit, and its own (512-547) for some calls.
                let nr = match rnd(3) {
                    0 => X32_ONLY
                        .iter()
                        .find(|(_, n)| *n == name)
                        .map_or(nr, |(x, _)| *x),
                    1 => 500 + rnd(60) as u32,
                    _ => nr,
                };
                let (x32, x32_renamed) = if with_x32 {
                    (
                        reference(&s, &nr_of, nr, args),
                        reference(&s, &nr_of, x32_as_native(nr), args),
                    )
                } else {
                    (foreign, foreign)
                };
                assert_eq!(
                    eval(&f.program, NATIVE_ARCH, nr | X32_SYSCALL_BIT, args),
                    x32,
                    "x32 nr {nr} args {args:?} profile {s:?}"
                );
                assert_eq!(
                    eval(&f_x32.program, NATIVE_ARCH, nr | X32_SYSCALL_BIT, args),
                    x32_renamed,
                    "x32 (running) nr {nr} args {args:?} profile {s:?}"
                );
                let nr = if rnd(5) == 0 {
                    rnd(460) as u32
                } else {
                    nr_of_i386(name).unwrap()
                };
                let i386 = if with_i386 {
                    reference(&s, &nr_of_i386, nr, args)
                } else {
                    foreign
                };
                assert_eq!(
                    eval(&f.program, AUDIT_ARCH_I386, nr, args),
                    i386,
                    "i386 nr {nr} args {args:?} profile {s:?}"
                );
            }
        }
    }
}
