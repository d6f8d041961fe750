//! `check-config` output: the effective settings as TOML, grouped by table, every key shown, each
//! with a comment naming its origin; unset keys as comment lines; secrets masked.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::build::Effective;
use super::keys::{self, KEYS};

/// Comments line up within a table, but never start further right than this column.
const MAX_COMMENT_COLUMN: usize = 56;

pub(crate) fn render(effective: &BTreeMap<&'static str, Effective>) -> String {
    let mut out = String::from(
        "# Effective settings of jitsi-sip-gateway, with where each value came from.\n\
         # Secrets are shown as \"********\".\n",
    );
    for section in keys::sections() {
        let _ = write!(out, "\n[{section}]\n");
        let specs = || KEYS.iter().filter(|spec| spec.section() == section);
        let column = specs()
            .filter_map(|spec| {
                let value = effective.get(spec.key)?.value.as_deref()?;
                let width = spec.name().chars().count() + 3 + value.chars().count() + 3;
                (width <= MAX_COMMENT_COLUMN).then_some(width)
            })
            .max()
            .unwrap_or(0);
        for spec in specs() {
            let entry = effective.get(spec.key);
            let line = match entry.and_then(|e| e.value.as_deref()) {
                Some(value) => {
                    let assignment = format!("{} = {value}", spec.name());
                    let origin = entry.and_then(|e| e.origin.as_ref());
                    let mut comment = match (entry.and_then(|e| e.note.as_deref()), origin) {
                        (Some(note), Some(origin)) => format!("{note}, {origin}"),
                        (Some(note), None) => note.to_owned(),
                        (None, Some(origin)) => origin.to_string(),
                        (None, None) => String::new(),
                    };
                    if !comment.is_empty() {
                        comment = format!("# {comment}");
                    }
                    pad(&assignment, &comment, column)
                }
                None => format!("# {}: not set ({})", spec.name(), spec.doc),
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

fn pad(assignment: &str, comment: &str, column: usize) -> String {
    let width = assignment.chars().count();
    let spaces = if width + 3 <= column {
        column - width
    } else {
        3
    };
    format!("{assignment}{}{comment}", " ".repeat(spaces))
}
