//! Named points where a test has husk kill itself with SIGKILL, to prove that a crash at that
//! very moment loses nothing: `HUSK_FAILPOINT=blob.downloaded husk pull …` dies the first time
//! a blob is fully downloaded, `HUSK_FAILPOINT=blob.downloaded@3` the third time. Compiled in
//! only with the `failpoints` feature (the workspace's tests turn it on); a no-op otherwise.

/// Die here with SIGKILL if `$HUSK_FAILPOINT` names this point (and this is its Nth hit).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WANTED: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let wanted = WANTED.get_or_init(|| {
        let v = std::env::var("HUSK_FAILPOINT").ok()?;
        Some(match v.split_once('@') {
            Some((n, count)) => (n.to_string(), count.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((point, nth)) = wanted {
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            // SAFETY: SIGKILL to ourselves; nothing after it runs.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Every point, in the order a pull meets them.
pub const POINTS: [&str; 11] = [
    "pull.manifest",
    "pull.config",
    "blob.downloading",
    "blob.downloaded",
    "blob.verified",
    "blob.committed",
    "layer.writing",
    "layer.written",
    "layer.committed",
    "record.written",
    "record.committed",
];
