//! Group commit for CreateRun: runs created at the same moment share one transaction.
//!
//! Each caller queues its run, then waits for its answer or the batch lock, whichever
//! comes first. Whoever holds the lock takes everything queued (up to [`MAX_BATCH`])
//! and writes it in one transaction; callers whose run was written meanwhile collect
//! their answer without taking a turn. One commit per batch
//! instead of one per run is what lets SQLite's single writer (and the WAL or redo
//! log of the servers) keep up with many concurrent clients. A failed batch is
//! retried run by run, so one bad run cannot fail the runs it happened to share a
//! transaction with.

use std::sync::Mutex as SyncMutex;

use tokio::sync::{oneshot, Mutex};

use super::runs::insert_runs;
use super::SqlStore;
use crate::{Error, NewRun, Run};

/// Most runs one transaction takes; the rest wait for the next batch.
const MAX_BATCH: usize = 256;

struct Queued {
    id: String,
    run: NewRun,
    reply: oneshot::Sender<Result<Run, Error>>,
}

/// The queue and the lock of one store's CreateRun batches.
#[derive(Default)]
pub(crate) struct RunBatches {
    queue: SyncMutex<Vec<Queued>>,
    writer: Mutex<()>,
}

impl RunBatches {
    /// Creates run `id` in the next batch and waits until it is committed (or failed).
    pub async fn create(&self, store: &SqlStore, id: String, run: NewRun) -> Result<Run, Error> {
        let (reply, mut answer) = oneshot::channel();
        self.lock_queue().push(Queued { id, run, reply });
        loop {
            // A caller whose run another caller's batch already wrote leaves the line
            // for the lock at once; only callers with queued work take a turn.
            let writer = tokio::select! {
                biased;
                answered = &mut answer => {
                    return answered.unwrap_or_else(|_| {
                        Err(Error::Internal(
                            "the run batch writer stopped before answering".into(),
                        ))
                    });
                }
                writer = self.writer.lock() => writer,
            };
            let batch = {
                let mut queue = self.lock_queue();
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect::<Vec<_>>()
            };
            if !batch.is_empty() {
                // A task of its own, so a caller that goes away mid-write (a closed
                // connection drops its request) cannot abandon the runs of others.
                let store = store.clone();
                let written = tokio::spawn(async move { write(&store, batch).await });
                if let Err(error) = written.await {
                    tracing::error!(%error, "run batch writer stopped");
                }
            }
            drop(writer);
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // Nothing panics while holding it, but a poisoned queue is still a valid queue.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn write(store: &SqlStore, batch: Vec<Queued>) {
    let (replies, runs): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|queued| (queued.reply, (queued.id, queued.run)))
        .unzip();
    match write_all(store, &runs).await {
        Ok(created) => {
            for (reply, run) in replies.into_iter().zip(created) {
                // The caller may have gone away; its run is stored all the same.
                let _ = reply.send(Ok(run));
            }
        }
        Err(error) if runs.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            let size = runs.len();
            tracing::debug!(%error, size, "run batch failed, writing its runs one by one");
            for (reply, run) in replies.into_iter().zip(runs.chunks(1)) {
                let result = write_all(store, run).await.and_then(|mut created| {
                    created
                        .pop()
                        .ok_or_else(|| Error::Internal("run insert returned nothing".into()))
                });
                let _ = reply.send(result);
            }
        }
    }
}

async fn write_all(store: &SqlStore, runs: &[(String, NewRun)]) -> Result<Vec<Run>, Error> {
    store
        .write("create runs", || async {
            let mut tx = store.begin_write().await?;
            let created = insert_runs(&mut tx, runs).await?;
            tx.commit().await?;
            Ok(created)
        })
        .await
}
