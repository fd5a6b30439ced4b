//! Task rows on their way to the store, written in groups.
//!
//! Most row writes need not be waited for: a task's final state only has to be in
//! the store before the run's end is recorded. Such rows are queued, and the next
//! write that is waited for (a task about to start its process, a cache lookup,
//! the run's end) takes every queued row with it in one transaction; a short timer
//! writes them when nothing else does. So in a chain, the end of one task and the
//! start of the next cost one transaction, and parallel tasks share theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kfpd_store::{MetadataStore, Task};

/// Longest time a queued row waits when no other write comes along.
const FLUSH_DELAY: Duration = Duration::from_millis(50);

pub(crate) struct TaskWriter {
    store: Arc<dyn MetadataStore>,
    queue: Mutex<Queue>,
    /// Held while a batch is written, so batches (and the versions of one row) reach
    /// the store in the order they were queued.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Queue {
    /// Queued rows in order, one per task (a newer version replaces the older).
    rows: Vec<Task>,
    index: HashMap<String, usize>,
    timer_armed: bool,
}

impl Queue {
    fn push(&mut self, task: Task) {
        match self.index.get(&task.id) {
            Some(&position) => self.rows[position] = task,
            None => {
                self.index.insert(task.id.clone(), self.rows.len());
                self.rows.push(task);
            }
        }
    }

    fn take(&mut self) -> Vec<Task> {
        self.index.clear();
        std::mem::take(&mut self.rows)
    }
}

impl TaskWriter {
    pub fn new(store: Arc<dyn MetadataStore>) -> Arc<TaskWriter> {
        Arc::new(TaskWriter {
            store,
            queue: Mutex::new(Queue::default()),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Queues a row; it reaches the store with the next write or within [`FLUSH_DELAY`].
    pub fn defer(self: &Arc<TaskWriter>, task: Task) {
        let arm_timer = {
            let mut queue = self.lock();
            queue.push(task);
            !std::mem::replace(&mut queue.timer_armed, true)
        };
        if arm_timer {
            let writer = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_DELAY).await;
                writer.lock().timer_armed = false;
                if let Err(error) = writer.flush().await {
                    tracing::warn!(%error, "cannot record tasks");
                }
            });
        }
    }

    /// Writes a row, with every row queued before it, and waits until it is stored.
    pub async fn write(&self, task: Task) -> Result<(), kfpd_store::Error> {
        let id = task.id.clone();
        self.lock().push(task);
        self.write_queued(Some(&id)).await
    }

    /// Writes every queued row and waits until they are stored.
    pub async fn flush(&self) -> Result<(), kfpd_store::Error> {
        self.write_queued(None).await
    }

    /// Writes the queue in one transaction. If that fails, the rows are written one
    /// by one, so that one bad row does not sink the others; the error returned is
    /// `own`'s (or the first one, without `own`).
    async fn write_queued(&self, own: Option<&str>) -> Result<(), kfpd_store::Error> {
        let _writing = self.writing.lock().await;
        let rows = self.lock().take();
        if rows.is_empty() {
            return Ok(());
        }
        let Err(error) = self.store.save_tasks(&rows).await else {
            return Ok(());
        };
        if rows.len() == 1 {
            return Err(error);
        }
        let mut result = Ok(());
        for row in &rows {
            if let Err(error) = self.store.save_task(row).await {
                tracing::warn!(run = %row.run_id, task = %row.name, %error, "cannot record task");
                let reported = own.is_none_or(|id| id == row.id);
                if reported && result.is_ok() {
                    result = Err(error);
                }
            }
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
