//! The engine pool: the threads policy modules run on, apart from the threads that serve
//! HTTP, so no module can hold an HTTP worker however long it runs.
//!
//! A request's policy work is one job (a future). It starts on the *first-slice* threads,
//! which run at the normal priority: an ordinary call (tens of microseconds) finishes there.
//! Guest code yields back to the pool at every epoch tick once it has run past
//! [`FIRST_SLICE`] of its own time; such a job is *demoted*: it leaves the first-slice
//! threads and finishes on the *long-call* threads, which run under Linux's `SCHED_IDLE`
//! policy (sched(7)): they get a core only when nothing else wants it, and any other thread
//! that wakes up preempts them at once. The HTTP workers and every module's first slice
//! therefore always go before long calls, so a module that loops or burns CPU slows down
//! only its own calls. Its deadline counts its own running time
//! ([`super::meter`]), so a long call is still stopped after `deadline_ms` of work.
//!
//! Why not wasmtime's async calls on the HTTP workers alone: a guest that runs between two
//! epoch yields holds its worker thread for that whole tick, and every connection on that
//! worker waits with it. Why two thread classes rather than one: with one class a looping
//! module's slices queue in front of well-behaved calls, and at the operating-system level
//! its threads compete with the HTTP workers as equals.
//!
//! Jobs may await (a permit, a host import waiting on the network): both thread classes are
//! tokio runtimes, so waiting holds no thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;

use super::meter::CallMeter;

/// A job that has run this long (its own time) leaves the first-slice threads.
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(1);

/// The nice level of the long-call threads where `SCHED_IDLE` is not available: the lowest
/// priority under the normal policy (a nice-19 thread gets about 1.5% of a core beside a
/// runnable nice-0 thread, but it is not preempted at once when one wakes up).
const LONG_CALL_NICE: i32 = 19;

pub(crate) struct EnginePool {
    first_slice: Option<Runtime>,
    long_calls: Option<Runtime>,
    first_slice_handle: Handle,
    long_calls_handle: Handle,
}

impl EnginePool {
    /// Starts `threads` first-slice threads and as many long-call threads.
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let first_slice = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ehrgate-policy")
            .enable_time()
            .build()?;
        let long_calls = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ehrgate-policy-long")
            .enable_time()
            .on_thread_start(lower_priority)
            .build()?;
        Ok(EnginePool {
            first_slice_handle: first_slice.handle().clone(),
            long_calls_handle: long_calls.handle().clone(),
            first_slice: Some(first_slice),
            long_calls: Some(long_calls),
        })
    }

    /// Drops `value` (a guest's store, whose teardown returns its instance to the pool) on a
    /// first-slice thread.
    pub(crate) fn release<T: Send + 'static>(&self, value: T) {
        self.first_slice_handle.spawn(async move { drop(value) });
    }

    /// Runs `job` on the pool, metered by `meter`; the receiver gets its output (an error
    /// only if the job panicked or the pool shut down). A job whose module ran long last
    /// time (`starts_long`) moves to the long-call threads as soon as its guest runs, so a
    /// module that loops on every call does not take a first-slice thread for a slice each
    /// time.
    pub(crate) fn submit<T, F>(
        &self,
        meter: Arc<CallMeter>,
        job: F,
        starts_long: bool,
    ) -> oneshot::Receiver<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        if starts_long {
            // Still starts here: setting up the instance takes kernel locks that must not be
            // held at the lowest priority; the guest yields at its first epoch check.
            meter.demote();
        }
        let long_calls = self.long_calls_handle.clone();
        self.first_slice_handle.spawn(async move {
            let mut job = Metered {
                inner: Box::pin(job),
                meter: meter.clone(),
            };
            let finished = std::future::poll_fn(|cx| match Pin::new(&mut job).poll(cx) {
                Poll::Ready(output) => Poll::Ready(Some(output)),
                // The guest yielded at an epoch tick after its first slice: move it. (A job
                // that waits for a slot stays: its instance is set up here.)
                Poll::Pending if meter.take_yield() && meter.is_demoted() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            let output = match finished {
                Some(output) => output,
                None => match long_calls.spawn(job).await {
                    Ok(output) => output,
                    Err(_) => return,
                },
            };
            let _ = sender.send(output);
        });
        receiver
    }
}

impl Drop for EnginePool {
    fn drop(&mut self) {
        // The pool may be dropped on an async thread, where a blocking shutdown panics;
        // jobs still running are abandoned (their requests have already given up).
        for runtime in [self.first_slice.take(), self.long_calls.take()]
            .into_iter()
            .flatten()
        {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority to `SCHED_IDLE`, or else to nice 19. Best effort:
/// a thread that keeps the normal priority isolates less but stays correct.
fn lower_priority() {
    if super::scheduling::set_policy(super::scheduling::Policy::Idle).is_ok() {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), LONG_CALL_NICE) {
        tracing::warn!(%error, "cannot lower the priority of a long-call policy thread");
    }
}

/// Runs `job` to completion on the calling thread, metered by `meter`: the engine's work
/// without the hand-off to the pool and without its isolation. For benchmarks that measure
/// what an evaluation costs; a job that waits for a busy slot needs the pool.
pub(crate) fn run_here<F: Future>(meter: Arc<CallMeter>, job: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut job = Metered {
        inner: Box::pin(job),
        meter,
    };
    loop {
        if let Poll::Ready(output) = Pin::new(&mut job).poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// A future whose polls are charged to its meter.
struct Metered<F: ?Sized> {
    inner: Pin<Box<F>>,
    meter: Arc<CallMeter>,
}

impl<F: Future + ?Sized> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.meter.begin_slice();
        let result = self.inner.as_mut().poll(cx);
        self.meter.end_slice();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_and_report_their_output() {
        let pool = EnginePool::start(1).expect("pool starts");
        let meter = Arc::new(CallMeter::default());
        let output = pool.submit(meter, async { 6 * 7 }, false).blocking_recv();
        assert_eq!(output, Ok(42));
    }

    #[test]
    fn a_demoted_job_finishes_on_a_long_call_thread() {
        let pool = EnginePool::start(1).expect("pool starts");
        let meter = Arc::new(CallMeter::default());
        let job_meter = meter.clone();
        let output = pool
            .submit(
                meter,
                async move {
                    job_meter.demote();
                    job_meter.mark_yield();
                    tokio::task::yield_now().await;
                    let name = std::thread::current().name().map(str::to_owned);
                    (name, scheduling_policy())
                },
                false,
            )
            .blocking_recv();
        let (name, policy) = output.expect("the job reported");
        assert_eq!(name.as_deref(), Some("ehrgate-policy-long"));
        // 5 is SCHED_IDLE (linux/sched.h).
        assert_eq!(policy, Some(5));
    }

    #[test]
    fn a_job_of_a_module_that_ran_long_moves_at_its_first_yield() {
        let pool = EnginePool::start(1).expect("pool starts");
        let meter = Arc::new(CallMeter::default());
        let job_meter = meter.clone();
        let output = pool
            .submit(
                meter.clone(),
                async move {
                    let before = std::thread::current().name().map(str::to_owned);
                    job_meter.mark_yield();
                    tokio::task::yield_now().await;
                    (before, std::thread::current().name().map(str::to_owned))
                },
                true,
            )
            .blocking_recv();
        assert_eq!(
            output,
            Ok((
                Some("ehrgate-policy".to_owned()),
                Some("ehrgate-policy-long".to_owned())
            ))
        );
        assert!(meter.is_demoted());
    }

    /// The calling thread's scheduling policy, field 41 of `/proc/thread-self/stat`.
    fn scheduling_policy() -> Option<u32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let (_, after_name) = stat.rsplit_once(')')?;
        // Fields after the name start at field 3.
        after_name.split_whitespace().nth(41 - 3)?.parse().ok()
    }
}
