//! [`OnWake`]: poll a future only when a wake-up was meant for it.
//!
//! `tokio::select!` and `try_join!` poll every branch whenever the task
//! wakes. A relay wakes for every burst of bytes, while its timers and kill
//! signals almost never fire; polling them anyway (a watch channel's
//! `Notified`, a `Sleep`, each taking locks) cost about 1,400 of the 6,600
//! userspace instructions of a keep-alive request (callgrind). Wrapped in
//! `OnWake`, such a branch costs one uncontended lock per task wake-up, and
//! its inner future runs only after one of its own wakers fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A future polled only on its first poll and after its own wake-ups.
pub struct OnWake<F> {
    inner: F,
    signal: Arc<Signal>,
    /// The waker handed to `inner`: marks the signal, then wakes the task.
    waker: Waker,
    polled: bool,
}

struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = match self.task.lock() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F: Future> OnWake<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Self {
            inner,
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            polled: false,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // `self` and `OnWake` has no `Drop`; the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        {
            // The task's waker first, so that a wake-up between the check
            // below and `Pending` still reaches the task.
            let mut task = this.signal.task.lock().unwrap_or_else(|p| p.into_inner());
            match &*task {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }
        if this.polled && !this.signal.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        this.polled = true;
        // SAFETY: see above.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        inner.poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `open` is set, waking through the waker
    /// it saw last when `poke` is called.
    struct Probe {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.open.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    struct Flag(AtomicUsize);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn inner_runs_only_after_its_own_wake_ups() {
        let (polls, open) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let waker = Arc::new(Mutex::new(None));
        let probe = Probe {
            polls: Arc::clone(&polls),
            open: Arc::clone(&open),
            waker: Arc::clone(&waker),
        };
        let mut fut = Box::pin(OnWake::new(probe));
        let task = Arc::new(Flag(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // Task wake-ups for other reasons do not reach the inner future.
        for _ in 0..5 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its own wake-up, from another thread, wakes the task and runs it.
        open.store(true, Ordering::SeqCst);
        let inner_waker = waker.lock().unwrap().clone().unwrap();
        std::thread::spawn(move || inner_waker.wake())
            .join()
            .unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
