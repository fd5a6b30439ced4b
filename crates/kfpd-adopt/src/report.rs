//! What a pass brought (or, dry, would bring), per upstream table, and every
//! row it could not bring with the reason.

use std::fmt;

/// An upstream row that was not brought (or brought with a caveat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub table: &'static str,
    pub id: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows upstream has (for `tasks`: the rows of the runs brought).
    pub upstream: usize,
    /// Brought for the first time.
    pub new: usize,
    /// Brought again because they changed since the last pass.
    pub changed: usize,
    /// Left alone: as the last pass brought them.
    pub unchanged: usize,
    pub refused: usize,
    /// Adopted earlier, deleted upstream since: removed from kfpd (or, dry, would be).
    pub deleted: usize,
}

/// An adopted row upstream deleted since: removed from kfpd, or kept (with why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gone {
    pub table: &'static str,
    pub id: String,
    /// The kfpd row's name, so a report says what goes, not only its id.
    pub name: String,
    pub kept: Option<String>,
}

impl TableReport {
    pub(crate) fn new(
        table: &'static str,
        upstream: usize,
        to_bring: &[String],
        new: usize,
    ) -> TableReport {
        TableReport {
            table,
            upstream,
            new,
            changed: to_bring.len() - new,
            unchanged: upstream - to_bring.len(),
            refused: 0,
            deleted: 0,
        }
    }

    /// Counts an adopted row upstream no longer has.
    pub(crate) fn remove(&mut self, row: kfpd_store::adopt::GoneRow) -> Gone {
        if row.kept.is_none() {
            self.deleted += 1;
        }
        Gone {
            table: self.table,
            id: row.id,
            name: row.name,
            kept: row.kept,
        }
    }

    /// Counts a row that was to be brought as refused instead.
    /// `was_new` says whether it was counted as new or as changed (None: neither).
    pub(crate) fn refuse(
        &mut self,
        report: &mut Report,
        id: &str,
        was_new: Option<bool>,
        reason: String,
    ) {
        match was_new {
            Some(true) => self.new = self.new.saturating_sub(1),
            Some(false) => self.changed = self.changed.saturating_sub(1),
            None => {}
        }
        self.refused += 1;
        report.refused.push(Problem {
            table: self.table,
            id: id.to_string(),
            reason,
        });
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The source URL without its password.
    pub source: String,
    pub dry_run: bool,
    pub tables: Vec<TableReport>,
    pub refused: Vec<Problem>,
    /// Rows brought with something to know about them.
    pub warnings: Vec<Problem>,
    /// Adopted rows upstream deleted since the pass that brought them.
    pub gone: Vec<Gone>,
    /// `db_statuses.HaveSamplesLoaded`, when upstream has the row.
    pub samples_loaded: Option<bool>,
}

impl Report {
    pub(crate) fn warn(&mut self, table: &'static str, id: &str, reason: String) {
        self.warnings.push(Problem {
            table,
            id: id.to_string(),
            reason,
        });
    }

    /// Rows brought (or that a dry run would bring).
    pub fn brought(&self) -> usize {
        self.tables
            .iter()
            .map(|table| table.new + table.changed)
            .sum()
    }

    /// Adopted rows removed because upstream deleted them (or, dry, would be).
    pub fn deleted(&self) -> usize {
        self.tables.iter().map(|table| table.deleted).sum()
    }

    pub fn unchanged(&self) -> usize {
        self.tables.iter().map(|table| table.unchanged).sum()
    }

    pub fn table(&self, name: &str) -> Option<&TableReport> {
        self.tables.iter().find(|table| table.table == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, delete) = if self.dry_run {
            ("would bring", "would delete")
        } else {
            ("brought", "deleted")
        };
        writeln!(
            out,
            "adopting from {}{}",
            self.source,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "table", "upstream", "new", "changed", "unchanged", "refused", "deleted"
        )?;
        for table in &self.tables {
            writeln!(
                out,
                "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                table.table,
                table.upstream,
                table.new,
                table.changed,
                table.unchanged,
                table.refused,
                table.deleted
            )?;
        }
        if let Some(loaded) = self.samples_loaded {
            writeln!(
                out,
                "db_statuses: samples loaded = {loaded} (kfpd loads no samples)"
            )?;
        }
        writeln!(
            out,
            "{verb} {} row(s); {} unchanged; {} refused; {delete} {}",
            self.brought(),
            self.unchanged(),
            self.refused.len(),
            self.deleted()
        )?;
        for problem in &self.refused {
            writeln!(
                out,
                "refused {} {}: {}",
                problem.table, problem.id, problem.reason
            )?;
        }
        for gone in &self.gone {
            match &gone.kept {
                None => writeln!(
                    out,
                    "{delete} {} {} named {:?}: deleted upstream",
                    gone.table, gone.id, gone.name
                )?,
                Some(why) => writeln!(
                    out,
                    "kept {} {} named {:?}: deleted upstream, but {why}",
                    gone.table, gone.id, gone.name
                )?,
            }
        }
        for problem in &self.warnings {
            writeln!(
                out,
                "note {} {}: {}",
                problem.table, problem.id, problem.reason
            )?;
        }
        Ok(())
    }
}
