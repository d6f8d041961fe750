//! The TOML file layer: nested tables map to dotted keys; unknown keys, tables where a value
//! belongs and values of the wrong shape are errors naming the file, the key and the line.

use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::ConfigError;
use super::keys::{self, KeySpec, Kind};
use super::layers::{split_list, RawMap, RawText};
use super::origin::Origin;

/// Reads `path` into `raw`. Returns false when the file could not be used at all (unreadable or
/// not TOML), so that "required but not set" is not reported for keys it may hold.
pub(crate) fn apply(path: &Path, raw: &mut RawMap, errors: &mut Vec<ConfigError>) -> bool {
    let origin = Origin::File(path.to_path_buf());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            errors.push(ConfigError::source(
                &origin,
                None,
                format!("cannot read the file: {e}"),
            ));
            return false;
        }
    };
    let table = match DeTable::parse(&text) {
        Ok(table) => table,
        Err(e) => {
            let place = e
                .span()
                .map(|span| format!(" at {}", line_col(&text, span.start)))
                .unwrap_or_default();
            errors.push(ConfigError::source(
                &origin,
                None,
                format!("TOML syntax error{place}: {}", e.message()),
            ));
            return false;
        }
    };
    let mut walker = Walker {
        text: &text,
        origin,
        raw,
        errors,
    };
    walker.table("", table.get_ref());
    true
}

/// `line L, column C` (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

struct Walker<'a, 'r> {
    text: &'a str,
    origin: Origin,
    raw: &'r mut RawMap,
    errors: &'r mut Vec<ConfigError>,
}

impl Walker<'_, '_> {
    fn line(&self, offset: usize) -> String {
        let line = self
            .text
            .get(..offset)
            .unwrap_or(self.text)
            .matches('\n')
            .count()
            + 1;
        format!("line {line}")
    }

    fn table(&mut self, prefix: &str, table: &DeTable<'_>) {
        // In file order, so that errors read top to bottom.
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let full = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            let line = self.line(key.span().start);
            if let Some(spec) = keys::lookup(&full) {
                self.value(spec, value, &line);
            } else if keys::is_section(&full) {
                match value.get_ref() {
                    DeValue::Table(inner) => self.table(&full, inner),
                    other => self.errors.push(ConfigError::invalid(
                        &full,
                        None,
                        &self.origin,
                        format!(
                            "expected a table [{full}], found {} ({line})",
                            type_name(other)
                        ),
                    )),
                }
            } else {
                let detail = match keys::suggest(&full) {
                    Some(near) => format!("{line}; did you mean {near:?}?"),
                    None => line,
                };
                self.errors
                    .push(ConfigError::unknown_key(&full, &self.origin, detail));
            }
        }
    }

    fn value(&mut self, spec: &'static KeySpec, value: &Spanned<DeValue<'_>>, line: &str) {
        let text = match (spec.kind, value.get_ref()) {
            (Kind::List, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.trim().to_owned()),
                        other => {
                            return self.wrong_shape(
                                spec,
                                &format!("an array holding {}", type_name(other)),
                                line,
                            )
                        }
                    }
                }
                RawText::Many(out)
            }
            (Kind::List, DeValue::String(s)) => RawText::Many(split_list(s)),
            (Kind::List, other) => return self.wrong_shape(spec, type_name(other), line),
            (_, DeValue::String(s)) => RawText::One(s.to_string()),
            (_, DeValue::Integer(i)) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => RawText::One(n.to_string()),
                Err(_) => return self.wrong_shape(spec, "an integer out of range", line),
            },
            (_, DeValue::Boolean(b)) => RawText::One(b.to_string()),
            (_, other) => return self.wrong_shape(spec, type_name(other), line),
        };
        self.raw.set(spec, text, self.origin.clone());
    }

    fn wrong_shape(&mut self, spec: &'static KeySpec, found: &str, line: &str) {
        self.raw.reject(spec);
        self.errors.push(ConfigError::invalid(
            spec.key,
            None,
            &self.origin,
            format!("expected {}, found {found} ({line})", spec.kind.expected()),
        ));
    }
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a\nbc", 3), "line 2, column 2");
        assert_eq!(line_col("x", 0), "line 1, column 1");
    }
}
