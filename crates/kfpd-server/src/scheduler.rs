//! The scheduler: fires due recurring runs. It runs inside `kfpd serve` and,
//! against the same database, alone as `kfpd scheduler`; any number of them
//! may run at once, because every tick is claimed in the database.
//!
//! The loop reads the due rows, fires them (several recurring runs at a time,
//! each one's missed ticks in order), then sleeps until the earliest
//! `next_fire_at`, at most [`Options::idle_poll`], or until the API of this
//! process wakes it because a recurring run was created, edited or enabled.
//! Between ticks it costs one indexed query per poll.
//!
//! Time comes from a [`Clock`]; [`Scheduler::step`] takes "now" as an
//! argument, so tests drive the schedule with any times, without waiting.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::service::{Api, Fired};

/// Reads the current time for the scheduler loop.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// Tuning of the loop; the defaults suit a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Due rows read per query.
    pub batch_size: usize,
    /// Recurring runs fired at the same time.
    pub parallel: usize,
    /// Longest sleep without looking at the database: how soon a recurring run
    /// created through another process (or another scheduler's deferral) is seen.
    pub idle_poll: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_size: 256,
            parallel: 8,
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// Sleep after a pass that made no progress while rows were still due (another
/// scheduler is firing them), so two schedulers do not spin on the same rows.
const CONTENDED_PAUSE: Duration = Duration::from_millis(25);

/// Sleep after the database failed, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What one [`Scheduler::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Due recurring runs looked at.
    pub due: usize,
    /// Runs created.
    pub fired: usize,
    /// Claims another scheduler (or an edit) won.
    pub lost: usize,
    /// Recurring runs that could not be looked at (database errors).
    pub failed: usize,
    /// The batch was full: more rows may be due.
    pub more: bool,
}

/// A handle to a running scheduler loop.
#[derive(Clone)]
pub struct Handle {
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Handle {
    /// Makes the loop look at the database now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What the API of this process notifies when recurring runs change.
    pub fn wake_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Stops the loop after the pass in progress.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Resolves when the loop was asked to stop.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }
}

/// Fires due recurring runs through the service layer.
pub struct Scheduler {
    api: Api,
    options: Options,
    clock: Arc<dyn Clock>,
    /// Mixed into the order due rows are fired in, so schedulers sharing a
    /// database mostly work on different rows instead of racing for each.
    order_seed: u64,
}

impl Scheduler {
    pub fn new(api: Api, options: Options, clock: Arc<dyn Clock>) -> Scheduler {
        let order_seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Scheduler {
            api,
            options,
            clock,
            order_seed,
        }
    }

    /// A handle for a loop not started yet: give its [`Handle::wake_signal`]
    /// to the API first, then [`Scheduler::spawn`] with it.
    pub fn handle() -> Handle {
        Handle {
            wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts the loop on the current runtime.
    pub fn spawn(self, handle: &Handle) -> tokio::task::JoinHandle<()> {
        let handle = handle.clone();
        tokio::spawn(async move { self.run(handle).await })
    }

    /// Fires everything due at `now` (Unix seconds), at most one batch.
    pub async fn step(&self, now: i64) -> Result<Step> {
        let store = self.api.store();
        let mut rows = store
            .due_recurring_runs(now, self.options.batch_size)
            .await?;
        let mut step = Step {
            due: rows.len(),
            more: rows.len() >= self.options.batch_size,
            ..Step::default()
        };
        // Oldest due first; within one due time, in an order of this scheduler's own.
        let seed = self.order_seed;
        rows.sort_by_cached_key(|row| {
            let mixed = u64::from(kfpd_scheduler::naming::fnv1a_32(row.id.as_bytes())) ^ seed;
            (row.next_fire_at, mixed)
        });
        let results: Vec<(String, Result<Fired>)> = futures::stream::iter(rows)
            .map(|row| async move {
                let id = row.id.clone();
                (id, self.api.fire_due(row, now).await)
            })
            .buffer_unordered(self.options.parallel.max(1))
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Ok(fired) => {
                    step.fired += fired.runs;
                    step.lost += fired.lost;
                }
                Err(error) => {
                    step.failed += 1;
                    tracing::warn!(recurring_run = %id, %error, "cannot fire recurring run");
                }
            }
        }
        Ok(step)
    }

    async fn run(self, handle: Handle) {
        tracing::info!(
            idle_poll_ms = self.options.idle_poll.as_millis() as u64,
            "scheduler started"
        );
        loop {
            if handle.shutdown.is_cancelled() {
                tracing::info!("scheduler stopped");
                return;
            }
            let now = self.clock.now_millis().div_euclid(1000);
            let pause = match self.step(now).await {
                Ok(step) if step.failed > 0 && step.fired == 0 => ERROR_PAUSE,
                Ok(step) if step.more && step.fired + step.lost > 0 => Duration::ZERO,
                Ok(step) => self.pause_after(step).await,
                Err(error) => {
                    tracing::warn!(%error, "scheduler pass failed; retrying");
                    ERROR_PAUSE
                }
            };
            if pause.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = handle.wake.notified() => {},
                _ = tokio::time::sleep(pause) => {},
                _ = handle.shutdown.cancelled() => {},
            }
        }
    }

    /// How long to sleep after a pass: until the earliest due time, bounded.
    async fn pause_after(&self, step: Step) -> Duration {
        let next_due = match self.api.store().next_recurring_run_due().await {
            Ok(next_due) => next_due,
            Err(error) => {
                tracing::warn!(%error, "cannot read when recurring runs are due next");
                return ERROR_PAUSE;
            }
        };
        let Some(next_due) = next_due else {
            return self.options.idle_poll;
        };
        let wait_ms = next_due.saturating_mul(1000) - self.clock.now_millis();
        if wait_ms <= 0 {
            // Still due: rows another scheduler is firing, or a full batch.
            return if step.fired > 0 {
                Duration::ZERO
            } else {
                CONTENDED_PAUSE
            };
        }
        Duration::from_millis(wait_ms as u64).min(self.options.idle_poll)
    }
}

/// Runs `kfpd scheduler`: only the scheduler, against the database `config`
/// names (created and migrated if needed), until `shutdown` completes.
pub async fn run_alone(
    config: crate::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), crate::StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| crate::StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = crate::open_store(&config).await?;
    let settings = crate::service::Settings {
        multi_user: config.multi_user,
        pod_namespace: config.namespace.clone(),
        default_service_account: config.default_service_account.clone(),
    };
    let api = Api::new(Arc::new(store), settings, crate::service::system_clock());
    let handle = Scheduler::handle();
    let task = Scheduler::new(api, Options::default(), Arc::new(SystemClock)).spawn(&handle);
    tracing::info!(database = %config.database.location, "kfpd scheduler running");
    // A line tests and scripts can wait for, also when logs are filtered.
    println!("kfpd scheduler running");
    shutdown.await;
    handle.shutdown();
    if let Err(error) = task.await {
        tracing::warn!(%error, "scheduler task ended abnormally");
    }
    Ok(())
}
