//! Rebuilds started from the server (the operator console) rather than the CLI: one task per
//! projection, its progress readable while it runs and its outcome after.
//!
//! The rebuild itself is [`crate::rebuild`]: into a fresh schema while the live tables serve,
//! then swapped in. This module only runs it in the background and remembers how it went.

use crate::{rebuild, Projection};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a rebuild stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildState {
    Running,
    Finished { swapped_at_position: i64 },
    Failed { error: String },
}

/// One rebuild: its progress through the log and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildJob {
    pub name: String,
    pub state: RebuildState,
    /// The last position folded, and the head of the log when it was read.
    pub position: i64,
    pub head_position: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
}

impl RebuildJob {
    /// Percent of the log folded, 0 to 100 (integer: a progress bar needs no more).
    pub fn percent(&self) -> i64 {
        match self.state {
            RebuildState::Finished { .. } => 100,
            _ if self.head_position <= 0 => 0,
            _ => (self.position.saturating_mul(100) / self.head_position).clamp(0, 99),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(String),
}

/// The rebuilds of this process (one at a time per projection), kept until the next one starts.
#[derive(Default)]
pub struct RebuildJobs {
    jobs: Mutex<HashMap<String, RebuildJob>>,
}

impl RebuildJobs {
    /// Starts rebuilding `projection` on a background task.
    pub fn start(
        self: &Arc<Self>,
        pool: PgPool,
        projection: Arc<dyn Projection>,
        started_by: &str,
        now: DateTime<Utc>,
    ) -> Result<RebuildJob, StartError> {
        let name = projection.name().to_string();
        let job = RebuildJob {
            name: name.clone(),
            state: RebuildState::Running,
            position: 0,
            head_position: 0,
            started_at: now,
            finished_at: None,
            started_by: started_by.chars().take(200).collect(),
        };
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs
                .get(&name)
                .is_some_and(|j| j.state == RebuildState::Running)
            {
                return Err(StartError::AlreadyRunning(name));
            }
            jobs.insert(name.clone(), job.clone());
        }
        let jobs = Arc::clone(self);
        // The rebuild's future is not `Send` (a bulk builder is held across awaits), so it runs
        // on a blocking thread that drives it with this runtime's handle.
        let handle = tokio::runtime::Handle::current();
        // The finish time is the start (business time, from the caller's clock) plus the
        // monotonic time the rebuild took: no wall-clock read here.
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let progress_jobs = Arc::clone(&jobs);
                let progress_name = name.clone();
                let progress = move |position: i64, head: i64| {
                    let mut all = progress_jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(job) = all.get_mut(&progress_name) {
                        job.position = position;
                        job.head_position = head;
                    }
                };
                let outcome = rebuild(&pool, projection.as_ref(), &progress).await;
                let mut all = jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(job) = all.get_mut(&name) {
                    job.finished_at = Some(
                        now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default(),
                    );
                    job.state = match outcome {
                        Ok(position) => {
                            job.position = position;
                            job.head_position = job.head_position.max(position);
                            RebuildState::Finished {
                                swapped_at_position: position,
                            }
                        }
                        Err(error) => {
                            tracing::error!(%error, projection = name, "rebuild failed");
                            RebuildState::Failed {
                                error: error.to_string().chars().take(500).collect(),
                            }
                        }
                    };
                }
            })
        });
        Ok(job)
    }

    /// The latest rebuild of `name` in this process, if any.
    pub fn get(&self, name: &str) -> Option<RebuildJob> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}
