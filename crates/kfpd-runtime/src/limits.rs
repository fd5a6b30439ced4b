//! Process limits a task runner needs.

/// Raises the soft limit on open files to the hard limit and returns the new soft
/// limit. Every running task holds a few descriptors (its pipe, log file and pidfd),
/// and the common soft default of 1024 would stop a few hundred parallel tasks with
/// EMFILE long before the machine runs out of anything.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current.unwrap_or(u64::MAX));
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised)?;
    Ok(limit.maximum.unwrap_or(u64::MAX))
}
