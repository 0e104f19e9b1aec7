//! Open-connection tracking for drains: count, "now idle" wake-up, and a kill switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Connections of one server.
#[derive(Debug)]
pub struct Tracker {
    count: AtomicUsize,
    idle: Notify,
    kill: watch::Sender<bool>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            idle: Notify::new(),
            kill: watch::channel(false).0,
        }
    }
}

/// Held by a connection for its whole life.
#[derive(Debug)]
pub struct ConnGuard {
    tracker: Arc<Tracker>,
    /// Resolves when the connection must close at once.
    pub kill: watch::Receiver<bool>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.tracker.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> ConnGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        ConnGuard {
            tracker: Arc::clone(self),
            kill: self.kill.subscribe(),
        }
    }

    pub fn open(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until no connection is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Close every open connection now.
    pub fn kill_all(&self) {
        self.kill.send_replace(true);
        crate::proxy::park::sweep_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_wakes_when_the_last_connection_ends() {
        let t = Arc::new(Tracker::default());
        let a = t.enter();
        let b = t.enter();
        let waiter = tokio::spawn({
            let t = Arc::clone(&t);
            async move { t.idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("idle within 2s")
            .expect("task");
    }

    #[tokio::test]
    async fn kill_reaches_open_connections() {
        let t = Arc::new(Tracker::default());
        let mut g = t.enter();
        t.kill_all();
        tokio::time::timeout(Duration::from_secs(2), g.kill.wait_for(|k| *k))
            .await
            .expect("kill seen")
            .expect("channel open");
    }
}
