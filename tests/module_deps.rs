//! The architecture's dependency rules, checked on the source so they cannot erode silently:
//! which of our modules may use which (see `src/lib.rs`), and which single module may name each
//! third-party protocol crate (an upgrade or a swap then touches one module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module → modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("logging", &["config"]),
    ("sip", &["config"]),
    ("xmpp", &["config"]),
    ("jingle", &[]),
    ("media", &["config"]),
    ("dialplan", &["config"]),
    (
        "call",
        &["sip", "xmpp", "jingle", "media", "dialplan", "config"],
    ),
    ("api", &["call", "config"]),
    (
        "gateway",
        &["api", "call", "config", "media", "sip", "xmpp"],
    ),
];

/// third-party crate → the modules allowed to name it.
const WRAPPED: &[(&str, &[&str])] = &[
    ("rsipstack", &["sip"]),
    ("tokio_xmpp", &["xmpp"]),
    ("sasl", &["xmpp"]),
    ("xmpp_parsers", &["xmpp", "jingle"]),
    ("str0m", &["media"]),
    ("audiopus", &["media"]),
    ("dimpl", &["media"]),
    ("mio", &["media"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module of a file under `src/` (`src/sip/dialog.rs` → `sip`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without comments, so prose about other modules does not count as a use.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Our modules referenced as `crate::m` or inside `crate::{m, n::x}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                if let Some(name) = ident(item.trim()) {
                    refs.insert(name);
                }
            }
        } else if let Some(name) = ident(rest) {
            refs.insert(name);
        }
    }
    refs
}

fn ident(s: &str) -> Option<String> {
    let name: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(i, _)| {
        let before = code[..i].chars().last();
        let after = code[i + krate.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            && after.is_some_and(|c| c == ':')
    })
}

#[test]
fn modules_only_use_the_modules_the_architecture_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let Some(may_use) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` is not in the table",
                file.display()
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for used in crate_refs(&code) {
            if used != module
                && allowed.contains_key(used.as_str())
                && !may_use.contains(&used.as_str())
            {
                violations.push(format!("{}: `{module}` uses `{used}`", file.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency rules broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn each_protocol_crate_is_named_by_its_one_wrapping_module() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in files {
        let module = module_of(&file).unwrap_or_else(|| "main/lib".into());
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for (krate, owners) in WRAPPED {
            if names_crate(&code, krate) && !owners.contains(&module.as_str()) {
                violations.push(format!("{}: `{module}` names `{krate}`", file.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "protocol crates leak out of their modules:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checks_themselves_see_uses() {
    let refs = crate_refs("use crate::{sip::Dialog, config};\nlet x = crate::media::X;");
    assert_eq!(refs, ["config", "media", "sip"].map(String::from).into());
    assert!(names_crate("use str0m::Rtc;", "str0m"));
    assert!(!names_crate("let my_str0m_thing = 1;", "str0m"));
    assert!(code_of("// crate::sip is mentioned here").trim().is_empty());
}
