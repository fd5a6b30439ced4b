//! A feed of committed writes to runs and their tasks, so that what shows a run
//! live (the web UI's event streams) reads again when something changed instead
//! of on a timer. It covers the writes made through one store value and its
//! clones, that is one process: writers elsewhere (a second server on the same
//! database) are not seen, and watchers keep a slow timer for them.

use std::sync::Arc;

use tokio::sync::broadcast;

/// What a committed write touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// One run: the run row, its tasks, its artifacts or links.
    Run(Arc<str>),
    /// Possibly any run (an experiment archived with its runs, an adoption batch,
    /// retention): watchers of every run look again.
    Runs,
}

impl Change {
    /// Whether a watcher of run `run_id` must look again.
    pub fn touches(&self, run_id: &str) -> bool {
        match self {
            Change::Run(id) => id.as_ref() == run_id,
            Change::Runs => true,
        }
    }
}

/// How many changes a slow watcher may fall behind before it is told it lagged
/// (it then reads again, as for [`Change::Runs`]).
const BACKLOG: usize = 1024;

/// The sending side, held by the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Changes {
    sender: broadcast::Sender<Change>,
}

impl Default for Changes {
    fn default() -> Changes {
        let (sender, _) = broadcast::channel(BACKLOG);
        Changes { sender }
    }
}

impl Changes {
    /// A receiver of the changes committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Tells the watchers that run `run_id` changed. Nobody listening is fine.
    pub fn run(&self, run_id: &str) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let _ = self.sender.send(Change::Run(Arc::from(run_id)));
    }

    /// Tells the watchers that any run may have changed.
    pub fn runs(&self) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let _ = self.sender.send(Change::Runs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_sees_the_runs_it_watches_and_the_broad_changes() {
        let changes = Changes::default();
        let mut receiver = changes.subscribe();
        changes.run("a");
        changes.runs();
        let first = receiver.recv().await.ok();
        let second = receiver.recv().await.ok();
        assert_eq!(first, Some(Change::Run(Arc::from("a"))));
        assert!(first.is_some_and(|change| change.touches("a") && !change.touches("b")));
        assert!(second.is_some_and(|change| change.touches("b")));
    }

    #[test]
    fn sending_without_watchers_is_quiet() {
        let changes = Changes::default();
        changes.run("a");
        changes.runs();
        assert_eq!(changes.subscribe().len(), 0);
    }
}
