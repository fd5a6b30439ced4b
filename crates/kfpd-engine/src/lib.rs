//! kfpd's local execution engine: runs a pipeline's IR with tasks as local
//! processes, as upstream's driver and launcher do inside Argo pods.
//!
//! - [`executor_input`], [`values`], [`outputs`]: pure helpers (ExecutorInput,
//!   placeholders, typed values, reading outputs back);
//! - `dag`, `loops`, `container`: orchestration of one run, task by task, with
//!   conditions (`cel`), loops, exit handlers, retries and caching (`cache`);
//! - [`Engine`]: executes one claimed run; [`executor`]: the service that claims
//!   PENDING runs inside `kfpd serve`.

mod cache;
mod cel;
mod container;
mod dag;
mod engine;
pub mod executor;
pub mod executor_input;
mod loops;
pub mod outputs;
mod records;
pub mod values;
mod warm;
mod writer;

pub use cache::{parse_iso8601_duration, CacheOptions, STALENESS_ANNOTATION};
pub use engine::{Engine, Options, Outcome};
