//! Network input never panics: every fixture, mangled in every way we can enumerate, parses to Ok
//! or Err; what parses also maps to an offer (or not) and survives a round trip.

use std::panic::{catch_unwind, AssertUnwindSafe};

use xmpp_parsers::minidom::Node;

use super::super::*;
use super::{xml, FIXTURES};

/// Attribute values that break numbers, addresses and enumerations in every way we know.
const GARBAGE: &[&str] = &[
    "",
    " ",
    "abc",
    "-1",
    "0",
    "1.5",
    "4294967296",
    "99999999999999999999999999999999999999999999",
    "0x10",
    "::",
    "256.1.1.1",
    "true",
    "\u{0}",
    "é",
];

/// Runs everything a caller may do with untrusted input and reports a panic with its cause.
fn check(what: &str, el: &Element) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if let Ok(iq) = JingleIq::parse(el) {
            let _ = iq.audio_offer();
            let _ = iq.source_changes();
            let again = JingleIq::parse(&iq.to_element());
            assert_eq!(again.as_ref(), Ok(&iq), "round trip");
        }
    }));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{what}: {message}");
    }
}

/// Number of elements in the tree (pre-order).
fn count(el: &Element) -> usize {
    1 + el.children().map(count).sum::<usize>()
}

/// Applies `f` to the `index`-th element in pre-order.
fn with_element(el: &mut Element, index: &mut usize, f: &mut dyn FnMut(&mut Element)) -> bool {
    if *index == 0 {
        f(el);
        return true;
    }
    *index -= 1;
    el.children_mut().any(|c| with_element(c, index, f))
}

/// The `index`-th element in pre-order.
fn nth(el: &Element, index: usize) -> Option<&Element> {
    let mut stack = vec![el];
    let mut seen = 0;
    while let Some(e) = stack.pop() {
        if seen == index {
            return Some(e);
        }
        seen += 1;
        let mut children: Vec<_> = e.children().collect();
        children.reverse();
        stack.extend(children);
    }
    None
}

fn mutated(root: &Element, at: usize, mut f: impl FnMut(&mut Element)) -> Element {
    let mut copy = root.clone();
    with_element(&mut copy, &mut at.clone(), &mut f);
    copy
}

fn attribute_names(el: &Element) -> Vec<String> {
    el.attrs()
        .iter()
        .map(|((_, name), _)| name.to_string())
        .collect()
}

/// Keeps the element's nodes for which `keep(index of the node among element children)` holds.
fn keep_children(el: &mut Element, keep: impl Fn(usize) -> bool) {
    let mut i = 0;
    let nodes = el.take_nodes();
    for node in nodes {
        match node {
            Node::Element(child) => {
                if keep(i) {
                    el.append_child(child);
                }
                i += 1;
            }
            text => el.append_node(text),
        }
    }
}

#[test]
fn mangled_fixtures_never_panic() {
    let mut variants = 0;
    for (name, text) in FIXTURES {
        let root = xml(text);
        check(name, &root);
        for at in 0..count(&root) {
            let target = nth(&root, at).expect("element in range");
            for attr in &attribute_names(target) {
                let without = mutated(&root, at, |el| {
                    el.attrs_mut().retain(|_, n, _| n.as_str() != attr.as_str())
                });
                check(&format!("{name}: element {at} without {attr}"), &without);
                variants += 1;
                for garbage in GARBAGE {
                    let replaced = mutated(&root, at, |el| {
                        for ((_, n), v) in el.attrs_mut().iter_mut() {
                            if n.as_str() == attr.as_str() {
                                *v = (*garbage).to_owned();
                            }
                        }
                    });
                    check(
                        &format!("{name}: element {at} {attr}={garbage:?}"),
                        &replaced,
                    );
                    variants += 1;
                }
            }
            let children = target.children().count();
            for k in 0..children {
                let without_child = mutated(&root, at, |el| keep_children(el, |i| i != k));
                check(
                    &format!("{name}: element {at} without child {k}"),
                    &without_child,
                );
                let truncated = mutated(&root, at, |el| keep_children(el, |i| i < k));
                check(
                    &format!("{name}: element {at} cut after {k} children"),
                    &truncated,
                );
                variants += 2;
            }
            let emptied = mutated(&root, at, |el| {
                let _ = el.take_nodes();
            });
            check(&format!("{name}: element {at} emptied"), &emptied);
            let text = mutated(&root, at, |el| el.append_text_node("\u{0}garbage"));
            check(&format!("{name}: element {at} with text"), &text);
            variants += 2;
        }
    }
    assert!(variants > 10_000, "only {variants} variants tried");
}
