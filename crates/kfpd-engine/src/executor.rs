//! The local executor inside `kfpd serve`: picks up PENDING runs, runs them, stops
//! them on terminate, and after a restart resumes the runs it left RUNNING.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kfpd_core::run::Outcome;
use kfpd_store::list::{Op, Predicate, Resource, Value as FilterValue};
use kfpd_store::{ListQuery, Run, RunState, Scope};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::records::now;

/// How often the executor looks for work when nobody woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A cheap handle to the executor: wake it after creating, terminating or retrying
/// a run so it reacts at once instead of at its next poll.
#[derive(Clone)]
pub struct Handle {
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    /// The executor loop and each run it is executing, so shutdown can wait for
    /// them to stop their task processes and write their task rows.
    busy: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops taking new runs and cancels the running ones.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Completes once the loop has ended and every run it started has stopped
    /// (after [`Handle::shutdown`]): their task processes are gone and their rows
    /// written, so the process may exit.
    pub async fn stopped(&self) {
        while self.busy.load(std::sync::atomic::Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Counts one unit of executor work in [`Handle::stopped`] until dropped.
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn enter(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Busy {
        counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(Arc::clone(counter))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct Executor {
    engine: Arc<Engine>,
    active: Mutex<HashMap<String, CancellationToken>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    busy: Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts the executor loop on the current runtime.
pub fn spawn(engine: Arc<Engine>) -> Handle {
    let handle = Handle {
        wake: Arc::new(Notify::new()),
        shutdown: CancellationToken::new(),
        busy: Arc::default(),
    };
    let executor = Arc::new(Executor {
        engine,
        active: Mutex::new(HashMap::new()),
        wake: Arc::clone(&handle.wake),
        shutdown: handle.shutdown.clone(),
        busy: Arc::clone(&handle.busy),
    });
    let busy = Busy::enter(&handle.busy);
    tokio::spawn(async move {
        let _busy = busy;
        executor.recover().await;
        executor.run_loop().await;
    });
    handle
}

fn state_filter(state: RunState) -> Vec<Predicate> {
    vec![Predicate {
        key: "state".into(),
        op: Op::Eq,
        value: FilterValue::Str(state.as_str().into()),
    }]
}

impl Executor {
    /// The oldest runs in `state`, one page of 50.
    async fn runs_in(&self, state: RunState) -> Vec<Run> {
        match self.page_of(state, "").await {
            Ok(page) => page.items,
            Err(error) => {
                tracing::warn!(%error, state = state.as_str(), "cannot list runs");
                Vec::new()
            }
        }
    }

    async fn page_of(
        &self,
        state: RunState,
        token: &str,
    ) -> Result<kfpd_store::Page<Run>, kfpd_store::Error> {
        let query = ListQuery::new(
            Resource::Run,
            50,
            token,
            "created_at",
            Some(state_filter(state)),
        )?;
        self.engine.store.list_runs(&Scope::default(), &query).await
    }

    /// Every run in `state`, page after page. A database that cannot be read (still
    /// starting, or briefly gone) is asked again until it answers or shutdown begins:
    /// a run left out here would stay in that state until the next restart.
    async fn all_runs_in(&self, state: RunState) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut token = String::new();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.page_of(state, &token).await {
                Ok(page) => {
                    runs.extend(page.items);
                    if page.next_page_token.is_empty() {
                        return runs;
                    }
                    token = page.next_page_token;
                }
                Err(error) => {
                    tracing::warn!(%error, state = state.as_str(), "cannot list runs to recover; retrying");
                    if self.shutdown.is_cancelled() {
                        return runs;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Runs left RUNNING by a previous process resume (succeeded tasks are kept);
    /// runs left CANCELING end CANCELED.
    async fn recover(self: &Arc<Executor>) {
        for run in self.all_runs_in(RunState::Canceling).await {
            let result = self
                .engine
                .store
                .transition_run(
                    &run.id,
                    &[RunState::Canceling],
                    RunState::Canceled,
                    Some("run was terminated".into()),
                    now(),
                )
                .await;
            if let Err(error) = result {
                tracing::warn!(run = %run.id, %error, "cannot finish a canceled run");
            }
        }
        for run in self.all_runs_in(RunState::Running).await {
            tracing::info!(run = %run.id, "resuming a run interrupted by a restart");
            self.start(run);
        }
    }

    async fn run_loop(self: &Arc<Executor>) {
        loop {
            if self.shutdown.is_cancelled() {
                self.cancel_all();
                return;
            }
            self.cancel_requested().await;
            for run in self.runs_in(RunState::Pending).await {
                // Runs not claimed yet stay PENDING for the next start.
                if self.shutdown.is_cancelled() {
                    break;
                }
                let claimed = self
                    .engine
                    .store
                    .transition_run(
                        &run.id,
                        &[RunState::Pending],
                        RunState::Running,
                        None,
                        now(),
                    )
                    .await;
                match claimed {
                    Ok(run) => self.start(run),
                    // Terminated or claimed by someone else in the meantime.
                    Err(kfpd_store::Error::FailedPrecondition(_)) => {}
                    Err(error) => tracing::warn!(run = %run.id, %error, "cannot start run"),
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(POLL_INTERVAL) => {},
                _ = self.shutdown.cancelled() => {},
            }
        }
    }

    /// Runs the API moved to CANCELING are stopped here.
    async fn cancel_requested(&self) {
        let has_active = self
            .active
            .lock()
            .map(|active| !active.is_empty())
            .unwrap_or(false);
        if !has_active {
            return;
        }
        for run in self.runs_in(RunState::Canceling).await {
            let token = self
                .active
                .lock()
                .ok()
                .and_then(|active| active.get(&run.id).cloned());
            if let Some(token) = token {
                token.cancel();
            }
        }
    }

    fn cancel_all(&self) {
        if let Ok(active) = self.active.lock() {
            for token in active.values() {
                token.cancel();
            }
        }
    }

    fn start(self: &Arc<Executor>, run: Run) {
        let token = CancellationToken::new();
        if let Ok(mut active) = self.active.lock() {
            if active.contains_key(&run.id) {
                return;
            }
            active.insert(run.id.clone(), token.clone());
        }
        let executor = Arc::clone(self);
        let busy = Busy::enter(&self.busy);
        tokio::spawn(async move {
            let _busy = busy;
            let run_id = run.id.clone();
            tracing::info!(run = %run_id, "run started");
            let outcome = executor.engine.execute(run, token).await;
            if executor.shutdown.is_cancelled() {
                // Left RUNNING on purpose: the next start resumes it.
                tracing::info!(run = %run_id, "run interrupted by shutdown");
            } else {
                executor.finish(&run_id, outcome).await;
            }
            if let Ok(mut active) = executor.active.lock() {
                active.remove(&run_id);
            }
        });
    }

    /// Records the run's end. A database that is briefly gone is asked again (the
    /// run would otherwise stay RUNNING with nothing executing it); shutdown stops
    /// asking, and the next start resumes the run.
    async fn finish(&self, run_id: &str, outcome: Outcome) {
        let from = [RunState::Running, RunState::Canceling];
        let mut pause = Duration::from_millis(250);
        loop {
            let result = self
                .engine
                .store
                .transition_run(run_id, &from, outcome.state, outcome.error.clone(), now())
                .await;
            match result {
                Ok(_) => {
                    tracing::info!(run = %run_id, state = outcome.state.as_str(), "run finished");
                    return;
                }
                Err(error) if error.is_retryable() && !self.shutdown.is_cancelled() => {
                    tracing::warn!(run = %run_id, %error, "cannot record the end of a run yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {},
                        () = self.shutdown.cancelled() => {},
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    tracing::warn!(run = %run_id, %error, "cannot record the end of a run");
                    return;
                }
            }
        }
    }
}
