//! Giving memory back: what a long-lived, mostly sleeping process (a detached container's
//! monitor) kept from a busy start.
//!
//! Three kinds of pages are dropped, each only where its content is not lost:
//! - the heap's free pages (glibc's `malloc_trim`);
//! - the main thread's stack below the current frame;
//! - pages of read-only private file mappings (code, constants, and in a binary linked
//!   without PIE its `.data.rel.ro`) that are still the file's: they stay in the page cache
//!   and come back with a minor fault, shared with every other process mapping the file.
//!   A page copied on write (a relocation) is anonymous; `/proc/self/pagemap` tells the two
//!   apart page by page, and the copied ones are kept.
//!
//! The pages are dropped last, after the list of them is made, so that the caller goes
//! back to its wait having touched as little as possible again; the stack's last of all.
//!
//! For a process whose other threads (if any) neither map nor unmap memory meanwhile: a
//! read-only file mapping unmapped and replaced by heap between the listing and the drop
//! would lose live data. The monitor's only other thread waits on a timer.

use std::io::Read;
use std::os::unix::fs::FileExt;

/// How many page runs are collected before they are dropped (a stack array: no allocation
/// once the list is being made).
const RUNS: usize = 512;

/// pagemap bits: the page is present; the page is file-backed (or shared anonymous).
const PM_PRESENT: u64 = 1 << 63;
const PM_FILE: u64 = 1 << 61;

/// Give back what the process no longer needs (see the module's text). Cheap enough to call
/// before each of a few waits; a later touch of a dropped page costs a minor fault. Only
/// from the main thread for the stack to be trimmed, and only where no other thread maps or
/// unmaps memory meanwhile.
pub fn shed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's own to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let page = page_size();
    let mut runs = [(0usize, 0usize); RUNS];
    let mut count = 0;
    let mut stack = None;
    {
        let mut text = String::new();
        let Ok(mut maps) = std::fs::File::open("/proc/self/maps") else {
            return;
        };
        if maps.read_to_string(&mut text).is_err() {
            return;
        }
        let Ok(pagemap) = std::fs::File::open("/proc/self/pagemap") else {
            return;
        };
        let marker = 0u8;
        let sp = &marker as *const u8 as usize;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else {
                continue;
            };
            let inode = f.nth(2).unwrap_or("0");
            let name = f.next().unwrap_or("");
            let Some((start, end)) = range.split_once('-').and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            }) else {
                continue;
            };
            if name == "[stack]" {
                // The unused part of the main stack: below the current frame, with a margin
                // (only when called on the main thread: another's frame is elsewhere).
                let low = sp.saturating_sub(16 * 1024) & !(page - 1);
                if (start..end).contains(&sp) && low > start {
                    stack = Some((start, low - start));
                }
                continue;
            }
            let private_read_only = perms.starts_with('r')
                && perms.get(1..2) == Some("-")
                && perms.ends_with('p')
                && inode != "0";
            if private_read_only {
                file_pages(&pagemap, start, end, page, &mut runs, &mut count);
            }
        }
    }
    drop_runs(&runs[..count]);
    // Not in `runs`: a full list is dropped from deeper frames (`file_pages`), whose
    // arrays reach below the margin.
    if let Some(run) = stack {
        drop_runs(&[run]);
    }
}

/// Adds the runs of present, still file-backed pages of `start..end`.
fn file_pages(
    pagemap: &std::fs::File,
    start: usize,
    end: usize,
    page: usize,
    runs: &mut [(usize, usize); RUNS],
    count: &mut usize,
) {
    let mut entries = [0u64; 512];
    let mut at = start;
    let mut run: Option<usize> = None;
    while at < end {
        let pages = ((end - at) / page).min(entries.len());
        let mut bytes = [0u8; 512 * 8];
        let want = pages * 8;
        let offset = (at / page * 8) as u64;
        let got = match pagemap.read_at(&mut bytes[..want], offset) {
            Ok(n) if n >= 8 => n / 8,
            _ => break,
        };
        for (i, e) in entries.iter_mut().enumerate().take(got) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            *e = u64::from_ne_bytes(b);
        }
        for (i, e) in entries.iter().enumerate().take(got) {
            let addr = at + i * page;
            let droppable = e & PM_PRESENT != 0 && e & PM_FILE != 0;
            match (droppable, run) {
                (true, None) => run = Some(addr),
                (false, Some(s)) => {
                    push(runs, count, (s, addr - s));
                    run = None;
                }
                _ => {}
            }
        }
        at += got * page;
    }
    if let Some(s) = run {
        push(runs, count, (s, at - s));
    }
}

fn push(runs: &mut [(usize, usize); RUNS], count: &mut usize, run: (usize, usize)) {
    if *count == RUNS {
        // Full: these go now, and the list starts again.
        drop_runs(&runs[..]);
        *count = 0;
    }
    runs[*count] = run;
    *count += 1;
}

fn drop_runs(runs: &[(usize, usize)]) {
    for (start, len) in runs {
        // SAFETY: each run is either clean file pages of a read-only private mapping (read
        // back from the file on the next touch) or stack pages below the live frames (a
        // later touch maps a fresh zeroed page, as any stack growth does).
        unsafe {
            libc::madvise(*start as *mut libc::c_void, *len, libc::MADV_DONTNEED);
        }
    }
}

/// Drops the whole pages inside `buf`, whose content the caller no longer needs (a read
/// buffer between reads): they read back as zeros, and cost nothing until written again.
pub fn forget(buf: &mut [u8]) {
    let page = page_size();
    let start = (buf.as_mut_ptr() as usize).div_ceil(page) * page;
    let end = (buf.as_mut_ptr() as usize + buf.len()) & !(page - 1);
    if end > start {
        // SAFETY: whole pages inside a buffer we hold exclusively; anonymous (heap) memory,
        // which MADV_DONTNEED refills with zeros.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// This process's resident set, in kB.
pub fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size() as u64 / 1024)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    /// A table of references: relocated at load time in a position-independent binary
    /// (pages copied on write in a read-only mapping, which shedding must keep).
    static NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

    #[test]
    fn shedding_memory_keeps_code_data_heap_and_stack_whole() {
        let heap: Vec<u64> = (0..200_000).collect();
        let on_stack = [7u8; 4096];
        let boxed = Box::new(String::from("kept"));
        let mut buf = vec![1u8; 64 * 1024];
        let before = super::resident_kb();
        super::shed();
        super::forget(&mut buf);
        let after = super::resident_kb();
        assert!(before > 0 && after > 0, "{before} {after}");
        // Everything reads back as it was: relocated pointers, the heap, the stack, code.
        assert_eq!(NAMES.concat(), "alphabetagamma");
        assert_eq!(heap.iter().sum::<u64>(), 199_999 * 200_000 / 2);
        assert!(on_stack.iter().all(|b| *b == 7));
        assert_eq!(boxed.as_str(), "kept");
        // A forgotten buffer is still the caller's: zeros or its old bytes, writable.
        assert!(buf.iter().all(|b| *b == 0 || *b == 1));
        buf.fill(3);
        assert!(buf.iter().all(|b| *b == 3));
        let text = format!("{:?}", std::path::Path::new("/proc/self").canonicalize());
        assert!(text.contains("Ok"), "{text}");
        // A second time, from a deeper frame.
        fn deep(n: u32) -> u32 {
            if n == 0 {
                super::shed();
                0
            } else {
                deep(n - 1) + 1
            }
        }
        assert_eq!(deep(100), 100);
        assert_eq!(NAMES[2], "gamma");
    }

    #[test]
    fn shedding_gives_back_code_pages_that_were_touched() {
        // Touch much code and constants: formatting, parsing, path handling.
        let mut s = String::new();
        for i in 0..2000 {
            s.push_str(&format!(
                "{i:x} {:?} {}\n",
                std::path::Path::new("/a/b"),
                i as f64 / 3.0
            ));
        }
        assert!(s.len() > 1000);
        let file_kb = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("RssFile:"))?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        let before = file_kb();
        super::shed();
        let after = file_kb();
        assert!(
            after < before,
            "file-backed resident kB did not go down: {before} -> {after}"
        );
    }
}
