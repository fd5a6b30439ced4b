//! One request at a time per run: driver requests and launcher calls of one run
//! read its rows and write new ones from what they read (the first request of a
//! run makes its root row, the first of an iteration its row), so two at once
//! could make a row twice or end a DAG from stale rows. Different runs share no
//! rows, so their requests go on side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

/// A lock per run, made when a request of the run comes and dropped when the
/// last one waiting for it or holding it is done: the map holds only runs with a
/// request in flight.
#[derive(Default)]
pub(crate) struct RunTurns {
    runs: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Requests holding or waiting for `lock`.
    users: usize,
}

/// A run's turn: while it is held, no other request of the run is answered.
pub(crate) struct Turn<'a> {
    turns: &'a RunTurns,
    run_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl RunTurns {
    /// Waits for run `run_id`'s turn. Dropping the future before it is ready
    /// leaves nothing behind.
    pub(crate) async fn take(&self, run_id: &str) -> Turn<'_> {
        let lock = {
            let mut runs = self.lock();
            let entry = runs.entry(run_id.to_string()).or_insert_with(|| Entry {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                users: 0,
            });
            entry.users += 1;
            Arc::clone(&entry.lock)
        };
        // Counted from here on: a cancelled wait gives its place back in `drop`.
        let mut turn = Turn {
            turns: self,
            run_id: run_id.to_string(),
            guard: None,
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// Runs with a request in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut runs = self.turns.lock();
        if let Some(entry) = runs.get_mut(&self.run_id) {
            entry.users = entry.users.saturating_sub(1);
            if entry.users == 0 {
                runs.remove(&self.run_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn runs_take_turns_apart_and_leave_nothing_behind() {
        let turns = RunTurns::default();
        let a = turns.take("a").await;
        // Another run is not held up by run a's turn.
        let b = turns
            .take("b")
            .now_or_never()
            .expect("run b's turn while run a holds its own");
        assert_eq!(turns.len(), 2);
        // Run a's next request waits for the first.
        let mut second_a = Box::pin(turns.take("a"));
        assert!((&mut second_a).now_or_never().is_none());
        drop(b);
        assert_eq!(turns.len(), 1, "run b's entry goes with its last request");
        drop(a);
        let second_a = second_a
            .now_or_never()
            .expect("run a's second request goes on once the first ended");
        drop(second_a);
        assert_eq!(turns.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_entry() {
        let turns = RunTurns::default();
        let held = turns.take("a").await;
        let mut waiting = Box::pin(turns.take("a"));
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        drop(held);
        assert_eq!(turns.len(), 0);
        for index in 0..100 {
            drop(turns.take(&format!("run-{index}")).await);
        }
        assert_eq!(turns.len(), 0, "one entry per run in flight, none after");
    }
}
