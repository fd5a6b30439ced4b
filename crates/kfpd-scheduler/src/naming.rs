//! Names of the runs a recurring run fires, as upstream's ScheduledWorkflow
//! controller makes them.
//!
//! Upstream names each fired run `<swf>-<index>-<hash>`: `<swf>` is the
//! ScheduledWorkflow's Kubernetes name, `<index>` counts the recurring run's
//! fired runs from 1, and `<hash>` is the 32-bit FNV-1a hash of
//! `<swf>-<index>` in decimal. The Kubernetes name comes from the display
//! name (lower-cased, everything but `a-z`, `0-9` and `-` dropped, `job-` when
//! nothing is left, cut to 25 characters) followed by five random characters
//! that Kubernetes appends. kfpd has no Kubernetes object, so it takes those
//! five characters from the recurring run's id: the names look like
//! upstream's and stay the same for the life of the recurring run.

/// Longest prefix upstream keeps from the display name.
const PREFIX_LIMIT: usize = 25;
/// Characters Kubernetes appends to a `generateName`.
const SUFFIX_LENGTH: usize = 5;

/// The stand-in for upstream's ScheduledWorkflow name.
pub fn schedule_name(display_name: &str, recurring_run_id: &str) -> String {
    let mut prefix: String = display_name
        .to_lowercase()
        .chars()
        .filter(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || *ch == '-')
        .take(PREFIX_LIMIT)
        .collect();
    if prefix.is_empty() {
        prefix = "job-".to_string();
    }
    let suffix: String = recurring_run_id
        .to_lowercase()
        .chars()
        .filter(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .take(SUFFIX_LENGTH)
        .collect();
    prefix + &suffix
}

/// The display name of the `index`-th run (counting from 1) fired by a
/// recurring run whose ScheduledWorkflow name is `schedule_name`.
pub fn fired_run_name(schedule_name: &str, index: i64) -> String {
    let resource_id = format!("{schedule_name}-{index}");
    let hash = fnv1a_32(resource_id.as_bytes());
    format!("{resource_id}-{hash}")
}

/// 32-bit FNV-1a, as Go's `hash/fnv.New32a`.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_run_name_matches_upstream() {
        // Upstream's TestScheduledWorkflow_NextResourceName: last index 50.
        assert_eq!(
            fired_run_name("WORKFLOW_NAME", 51),
            "WORKFLOW_NAME-51-2626342551"
        );
    }

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn schedule_name_is_sanitised_like_upstream() {
        let id = "3F2B9C1D-0000-4000-8000-000000000000";
        assert_eq!(
            schedule_name("Nightly Training", id),
            "nightlytraining3f2b9"
        );
        assert_eq!(schedule_name("a_b-c.d", id), "ab-cd3f2b9");
        assert_eq!(schedule_name("日本", id), "job-3f2b9");
        assert_eq!(
            schedule_name("abcdefghijklmnopqrstuvwxyz0123", id),
            "abcdefghijklmnopqrstuvwxy3f2b9"
        );
    }
}
