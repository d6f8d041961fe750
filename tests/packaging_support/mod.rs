//! Readers for the packaging files and the documents they are checked against, small enough to
//! trust: Dockerfile instructions, systemd directives, environment files, the README's variable
//! table, the config registry's variable names, and the compose file (through PyYAML).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

#[derive(Debug, Clone)]
pub struct Instruction {
    pub name: String,
    pub args: String,
}

/// Every instruction in order, continuation lines joined, comments and the parser directive out.
pub fn dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        pending.push_str(trimmed);
        let (name, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push(Instruction {
            name: name.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        pending.clear();
    }
    assert!(pending.is_empty(), "unterminated continuation: {pending}");
    out
}

/// The instructions after the last `FROM`: what the published image is made of.
pub fn final_stage(all: &[Instruction]) -> Vec<Instruction> {
    let start = all.iter().rposition(|i| i.name == "FROM").expect("a FROM");
    all[start..].to_vec()
}

pub fn only<'a>(stage: &'a [Instruction], name: &str) -> &'a Instruction {
    let hits: Vec<_> = stage.iter().filter(|i| i.name == name).collect();
    assert_eq!(hits.len(), 1, "exactly one {name} expected: {hits:?}");
    hits[0]
}

/// A JSON-array ("exec form") argument list; the shell form would hide the command behind sh -c.
pub fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form ({e}): {args}"))
}

// ---------------------------------------------------------------------------------------------
// systemd units and environment files

/// `(section, key, value)` for every directive of a unit file.
pub fn unit_directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
        out.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    out
}

pub fn directive<'a>(unit: &'a [(String, String, String)], key: &str) -> &'a str {
    let hits: Vec<_> = unit.iter().filter(|(_, k, _)| k == key).collect();
    assert_eq!(hits.len(), 1, "exactly one {key}= expected: {hits:?}");
    &hits[0].2
}

/// `NAME=value` lines as systemd's EnvironmentFile reads them (comments, blank lines, optional
/// surrounding quotes).
pub fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l}"));
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The README's variable table

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Read by the configuration: feeds a setting.
    Honoured,
    /// Recognised, has no effect, and logs one warning when set.
    Ignored,
    /// Not read at all (it serves something jigasi's image runs next to jigasi).
    NotRead,
}

#[derive(Debug, Clone)]
pub struct EnvRow {
    /// A variable name, or a prefix ending in `*`.
    pub pattern: String,
    pub status: Status,
}

impl EnvRow {
    pub fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.pattern,
        }
    }
}

/// The rows of the table under the README heading `heading`: first cell `` `NAME` `` (several
/// names may share a row, comma-separated), second cell `honoured`, `ignored` or `not read`.
pub fn readme_env_table(readme: &str, heading: &str) -> Vec<EnvRow> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in readme[start..].lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        let Some(row) = line.strip_prefix('|') else {
            if in_table {
                break;
            }
            continue;
        };
        in_table = true;
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let status = match cells.get(1).copied().unwrap_or("") {
            "honoured" => Status::Honoured,
            "ignored" => Status::Ignored,
            "not read" => Status::NotRead,
            _ => continue, // the header and the separator
        };
        for name in cells[0].split(',') {
            let name = name.trim().trim_matches('`');
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c == '*'),
                "not a variable name in the README table: {name:?}"
            );
            rows.push(EnvRow {
                pattern: name.to_owned(),
                status,
            });
        }
    }
    assert!(!rows.is_empty(), "no table rows under {heading:?}");
    rows
}

// ---------------------------------------------------------------------------------------------
// The config registry (src/config/keys.rs): the variables it reads and those it ignores

/// The text between `marker` and the end of the static slice it opens (`];` at line start).
fn static_block<'a>(source: &'a str, marker: &str) -> &'a str {
    let start = source.find(marker).unwrap_or_else(|| panic!("{marker}"));
    let end = source[start..].find("\n];").expect("end of the static") + start;
    &source[start..end]
}

/// The string literals of `block`, in order (the registry writes no escapes in them).
fn string_literals(block: &str) -> Vec<&str> {
    block.split('"').skip(1).step_by(2).collect()
}

/// Every variable a key reads: `Var("X")` and `WhenTrue { var: "X", … }` inside `KEYS`.
pub fn registry_vars(keys_rs: &str) -> Vec<String> {
    let block = static_block(keys_rs, "pub(crate) static KEYS");
    let mut out = Vec::new();
    for piece in block.split("Var(\"").skip(1) {
        out.push(piece.split('"').next().unwrap().to_owned());
    }
    for piece in block.split("var: \"").skip(1) {
        out.push(piece.split('"').next().unwrap().to_owned());
    }
    out
}

/// The first string of each `(name, reason)` pair of `IGNORED_ENV`.
pub fn registry_ignored(keys_rs: &str) -> Vec<String> {
    let block = static_block(keys_rs, "pub(crate) static IGNORED_ENV");
    let block = &block[block.find("= &[").expect("the slice")..];
    let literals = string_literals(block);
    assert_eq!(literals.len() % 2, 0, "(name, reason) pairs: {literals:?}");
    literals
        .iter()
        .step_by(2)
        .map(|s| (*s).to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The compose file, read by PyYAML in the lab's venv

/// The lab venv's interpreter (made by tests/lab/install.sh); `LAB_PYTHON` overrides it. Found
/// from this crate's own directory, as the lab crate's copy may be built from another checkout.
pub fn python() -> PathBuf {
    std::env::var_os("LAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".lab/venv/bin/python"))
}

/// The YAML file as JSON (what docker compose reads before interpolating `${…}`).
pub fn yaml(path: &Path) -> serde_json::Value {
    let script = "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))\n";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(path)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run tests/lab/install.sh)", python().display()));
    assert!(
        out.status.success(),
        "PyYAML could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Compose's interpolation of `${NAME:-default}` and `${NAME}` against `env` (unset or empty
/// takes the default, as `:-` does).
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let inner = &rest[start + 2..end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        let value = env.get(name).filter(|v| !v.is_empty());
        out.push_str(value.map_or(default, String::as_str));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// check-config output

/// `check-config`'s effective settings: `section.key` → (value as TOML, comment).
pub fn effective(stdout: &str) -> BTreeMap<String, (String, String)> {
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, rest) = line.split_once(" = ").unwrap_or_else(|| panic!("{line}"));
        let (value, comment) = rest.split_once("   # ").unwrap_or((rest, ""));
        out.insert(
            format!("{section}.{}", key.trim()),
            (value.trim().to_owned(), comment.trim().to_owned()),
        );
    }
    out
}
