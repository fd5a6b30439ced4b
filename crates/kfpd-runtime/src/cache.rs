//! The environments directory as a cache a user can look at and clean: what `kfpd envs list`
//! and `kfpd envs prune` show and remove.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::env::{self, Record, LAST_USED, STATE_DIR};
use crate::Error;

/// One directory under the environments directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its directory name.
    pub name: String,
    pub path: PathBuf,
    /// The image it serves, when it says.
    pub image: Option<String>,
    /// The interpreter it runs and that interpreter's version, when it says.
    pub python: Option<(PathBuf, String)>,
    /// Bytes of its files (links not followed).
    pub size: u64,
    /// When a kfpd process last used it (else when it was made).
    pub last_used: Option<SystemTime>,
    pub state: State,
}

/// Whether an environment can still be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ready,
    /// It would be rebuilt before its next use: why.
    Stale(String),
    /// A build in progress, or one a process that is gone left behind.
    Building {
        abandoned: bool,
    },
}

impl State {
    fn describe(&self) -> String {
        match self {
            State::Ready => "ready".to_string(),
            State::Stale(reason) => format!("stale: {reason}"),
            State::Building { abandoned: true } => "abandoned build".to_string(),
            State::Building { abandoned: false } => "being built".to_string(),
        }
    }
}

/// What `prune` removes besides stale environments and abandoned builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prune {
    /// Also environments no kfpd used for this long.
    pub unused_for: Option<Duration>,
    /// Every environment, ready or not (builds in progress are left alone).
    pub all: bool,
}

/// The environments under `envs_dir`, by name. A missing directory has none.
pub fn list(envs_dir: &Path) -> Result<Vec<Entry>, Error> {
    let dir_error = |source| Error::EnvsDir {
        path: envs_dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(envs_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(dir_error(error)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(dir_error)?;
        if !entry.file_type().map_err(dir_error)?.is_dir() {
            continue;
        }
        found.push(describe(&entry.path()));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn describe(path: &Path) -> Entry {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = Record::read(path);
    let state = if let Some(tail) = name
        .strip_prefix(".old-.tmp-")
        .or_else(|| name.strip_prefix(".tmp-"))
    {
        // `<dir name>-<pid>-<n>`: the pid is the second field from the end.
        let mut fields = tail.rsplitn(3, '-');
        let _counter = fields.next();
        let pid = fields.next().unwrap_or_default();
        State::Building {
            abandoned: env::abandoned_pid(pid).is_some(),
        }
    } else if !env::has_layout(path) {
        State::Stale("incomplete, or made by another kfpd version".to_string())
    } else {
        match &record {
            None => State::Stale("no record of its interpreter".to_string()),
            Some(record) => match record.stale_because() {
                Some(reason) => State::Stale(reason),
                None => State::Ready,
            },
        }
    };
    let image = record.as_ref().map(|r| r.image.clone()).or_else(|| {
        fs::read_to_string(path.join(STATE_DIR).join("image"))
            .ok()
            .map(|text| text.trim().to_string())
    });
    let last_used = [LAST_USED, "layout"].iter().find_map(|file| {
        fs::metadata(path.join(STATE_DIR).join(file))
            .and_then(|meta| meta.modified())
            .ok()
    });
    Entry {
        name,
        path: path.to_path_buf(),
        image,
        python: record.map(|r| (r.host.executable, r.host.version)),
        size: size_of(path),
        last_used,
        state,
    }
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|entry| size_of(&entry.path())).sum()
}

/// Removes stale environments, abandoned builds and what `options` adds; returns what went.
/// A removed environment is renamed aside first, so a kfpd using it sees it gone and makes
/// it again rather than finding it half deleted.
pub fn prune(envs_dir: &Path, options: Prune, now: SystemTime) -> Result<Vec<Entry>, Error> {
    let mut removed = Vec::new();
    for entry in list(envs_dir)? {
        let unused = |limit: Duration| {
            entry
                .last_used
                .and_then(|used| now.duration_since(used).ok())
                .is_some_and(|idle| idle >= limit)
        };
        let remove = match &entry.state {
            State::Building { abandoned } => *abandoned,
            State::Stale(_) => true,
            State::Ready => options.all || options.unused_for.is_some_and(unused),
        };
        if !remove {
            continue;
        }
        let remove_error = |source| Error::EnvsDir {
            path: entry.path.clone(),
            source,
        };
        let doomed = if entry.name.starts_with('.') {
            entry.path.clone()
        } else {
            let aside = envs_dir.join(format!(
                ".old-.tmp-{}-{}-prune",
                entry.name,
                std::process::id()
            ));
            fs::rename(&entry.path, &aside).map_err(remove_error)?;
            aside
        };
        fs::remove_dir_all(&doomed).map_err(remove_error)?;
        tracing::debug!(path = %entry.path.display(), "removed python environment");
        removed.push(entry);
    }
    Ok(removed)
}

/// `entries` as a table for a terminal: name, image, interpreter, size, last use, state.
pub fn table(entries: &[Entry], now: SystemTime) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "IMAGE".to_string(),
        "PYTHON".to_string(),
        "SIZE".to_string(),
        "LAST USED".to_string(),
        "STATE".to_string(),
    ]];
    for entry in entries {
        rows.push([
            entry.name.clone(),
            entry.image.clone().unwrap_or_else(|| "-".to_string()),
            entry
                .python
                .as_ref()
                .map(|(path, version)| format!("{version} {}", path.display()))
                .unwrap_or_else(|| "-".to_string()),
            human_size(entry.size),
            entry
                .last_used
                .and_then(|used| now.duration_since(used).ok())
                .map(ago)
                .unwrap_or_else(|| "-".to_string()),
            entry.state.describe(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `12.3 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parses an age such as `30d`, `12h`, `90m` or `45s` (a bare number is days).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age like 30d, 12h, 90m or 45s"))?;
    let seconds = match unit {
        "" | "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use d, h, m or s)"
            ))
        }
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// `3 min ago`, `2 d ago`.
fn ago(idle: Duration) -> String {
    let secs = idle.as_secs();
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(ago(Duration::from_secs(5)), "just now");
        assert_eq!(ago(Duration::from_secs(150)), "2 min ago");
        assert_eq!(ago(Duration::from_secs(3 * 86400 + 5)), "3 d ago");
    }

    #[test]
    fn ages_parse_with_their_unit_and_bad_ones_say_why() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("7"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert!(parse_age("3w").expect_err("weeks").contains("unknown unit"));
        assert!(parse_age("soon").expect_err("words").contains("not an age"));
    }

    #[test]
    fn a_missing_directory_lists_nothing_and_junk_is_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(list(&dir.path().join("none")).expect("list"), Vec::new());
        fs::create_dir_all(dir.path().join("half-made/.kfpd")).expect("mkdir");
        fs::write(dir.path().join("half-made/.kfpd/image"), "python:3.11\n").expect("image");
        let entries = list(dir.path()).expect("list");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].image.as_deref(), Some("python:3.11"));
        assert!(matches!(entries[0].state, State::Stale(_)), "{entries:?}");
        let removed = prune(dir.path(), Prune::default(), SystemTime::now()).expect("prune");
        assert_eq!(removed.len(), 1);
        assert_eq!(list(dir.path()).expect("list"), Vec::new());
    }
}
