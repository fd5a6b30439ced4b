//! kfpd's local execution engine: runs a pipeline's IR with tasks as local
//! processes, as upstream's driver and launcher do inside Argo pods. Every
//! decision (inputs, conditions, loop items, cache keys, outcomes) is
//! `kfpd_core`'s; this crate is the I/O around them.
//!
//! - `run`: one claimed run, its root DAG; `context`: what its tasks share;
//! - `dag`, `loops`: scheduling a DAG's tasks and a loop's iterations;
//! - `container`, `importer`, `cache`: executor tasks as processes, imports,
//!   cache look-ups and reuse; `records`, `writer`: task rows;
//! - `drive`, `launch`: one task of a run executed elsewhere (Argo's driver
//!   request, and what `kfpd launcher` asks for and reports); `settle`: ending
//!   the DAGs, loops, root and run around a task that ended there; `turns`:
//!   one such request at a time per run;
//! - [`Engine`]: shared by every run; [`executor`]: the service that claims
//!   PENDING runs inside `kfpd serve`.

mod cache;
mod container;
mod context;
mod dag;
mod drive;
mod engine;
pub mod executor;
mod importer;
mod launch;
mod loops;
mod records;
mod run;
mod settle;
mod turns;
mod warm;
mod writer;

pub use drive::{Decision, DriveError};
pub use engine::{Engine, Options};
pub use kfpd_core::cache::{parse_iso8601_duration, CacheOptions, STALENESS_ANNOTATION};
pub use kfpd_core::run::Outcome;
pub use launch::{AttemptReport, Launch, Produced};
