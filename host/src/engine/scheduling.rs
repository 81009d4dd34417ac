//! The engine's threads' scheduling policies (Linux sched(7)): long policy calls run under
//! `SCHED_IDLE`, so any other thread that wakes up preempts them at once, and the epoch
//! ticker, which is the sandbox's clock, runs under `SCHED_FIFO` where the process may (it
//! needs `CAP_SYS_NICE`), so deadlines are checked on time however busy the machine is.
//! Both are best effort: without them isolation is weaker, never incorrect.

/// A scheduling policy for the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `SCHED_IDLE`: a core only when nothing else wants it. Any thread may choose it.
    Idle,
    /// `SCHED_FIFO` at the lowest real-time priority (1): before every normal thread. For
    /// a thread that wakes, does a few nanoseconds of work and sleeps again.
    RealTime,
}

/// Sets the calling thread's policy.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn set_policy(policy: Policy) -> std::io::Result<()> {
    let (kind, priority) = match policy {
        Policy::Idle => (libc::SCHED_IDLE, 0),
        Policy::RealTime => (libc::SCHED_FIFO, 1),
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `sched_setscheduler` reads one `sched_param` through the pointer, which points
    // at a live, initialized value on this stack frame for the whole call; pid 0 is the
    // calling thread. It has no other memory effects.
    let result = unsafe { libc::sched_setscheduler(0, kind, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_policy(_policy: Policy) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
