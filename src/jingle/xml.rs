//! Small helpers over minidom shared by the parsers and the builders: typed attribute reads that
//! turn bad input into [`JingleError`], child lookup by namespace, and element construction.

use std::net::IpAddr;
use std::str::FromStr;

use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{ElementBuilder, NSChoice};

use super::errors::JingleError;
use super::Element;

type Result<T> = std::result::Result<T, JingleError>;

/// Children with this local name, in this namespace (`None`: any namespace, for elements that
/// senders disagree on, like `<parameter>`).
pub fn children<'a>(
    el: &'a Element,
    name: &'a str,
    ns: Option<&'a str>,
) -> impl Iterator<Item = &'a Element> + 'a {
    el.children().filter(move |c| match ns {
        Some(ns) => c.is(name, ns),
        None => c.is(name, NSChoice::Any),
    })
}

pub fn child<'a>(el: &'a Element, name: &'a str, ns: Option<&'a str>) -> Option<&'a Element> {
    children(el, name, ns).next()
}

pub fn has_child(el: &Element, name: &str, ns: Option<&str>) -> bool {
    child(el, name, ns).is_some()
}

pub fn opt_string(el: &Element, attribute: &str) -> Option<String> {
    el.attr(attribute).map(str::to_owned)
}

/// A required attribute; an empty value counts as missing.
pub fn req_string(el: &Element, element: &'static str, attribute: &'static str) -> Result<String> {
    match el.attr(attribute) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(JingleError::MissingAttribute { element, attribute }),
    }
}

/// An optional integer attribute that must fit `T` and lie in `range`.
pub fn opt_int<T>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>>
where
    T: TryFrom<i128> + PartialOrd,
{
    let Some(text) = el.attr(attribute) else {
        return Ok(None);
    };
    let out_of_range = || JingleError::OutOfRange {
        element,
        attribute,
        value: text.to_owned(),
    };
    let wide = text.parse::<i128>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => out_of_range(),
        _ => JingleError::BadNumber {
            element,
            attribute,
            value: text.to_owned(),
        },
    })?;
    let value = T::try_from(wide).map_err(|_| out_of_range())?;
    if range.contains(&value) {
        Ok(Some(value))
    } else {
        Err(out_of_range())
    }
}

pub fn req_int<T>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T>
where
    T: TryFrom<i128> + PartialOrd,
{
    opt_int(el, element, attribute, range)?
        .ok_or(JingleError::MissingAttribute { element, attribute })
}

pub fn opt_ip(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<IpAddr>> {
    el.attr(attribute)
        .map(|text| {
            IpAddr::from_str(text).map_err(|_| JingleError::BadIp {
                element,
                attribute,
                value: text.to_owned(),
            })
        })
        .transpose()
}

/// An attribute with a fixed set of values, read by `parse`.
pub fn opt_enum<T>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    el.attr(attribute)
        .map(|text| {
            parse(text).ok_or_else(|| JingleError::BadValue {
                element,
                attribute,
                value: text.to_owned(),
            })
        })
        .transpose()
}

/// xs:boolean, also in the capitalisation Java's `Boolean.toString` never writes but people do.
pub fn opt_bool(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<bool>> {
    opt_enum(el, element, attribute, |text| {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    })
}

/// Starts `<name xmlns=ns>`.
pub fn element(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}

/// Chainable attribute setting that leaves `None` values out.
pub trait SetAttr {
    fn set(self, name: &'static str, value: impl IntoValue) -> Self;
}

impl SetAttr for ElementBuilder {
    /// The names are our own constants, always valid NCNames.
    fn set(self, name: &'static str, value: impl IntoValue) -> Self {
        match (NcName::try_from(name), value.into_value()) {
            (Ok(name), Some(value)) => self.attr(name, value),
            _ => self,
        }
    }
}

/// Attribute values we print: text, numbers, addresses and booleans (as Java prints them).
pub trait IntoValue {
    fn into_value(self) -> Option<String>;
}

impl IntoValue for &str {
    fn into_value(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl IntoValue for &String {
    fn into_value(self) -> Option<String> {
        Some(self.clone())
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Option<String> {
        Some(if self { "true" } else { "false" }.to_owned())
    }
}

macro_rules! display_value {
    ($($t:ty),*) => {
        $(impl IntoValue for $t {
            fn into_value(self) -> Option<String> {
                Some(self.to_string())
            }
        })*
    };
}

display_value!(u8, u16, u32, IpAddr);

impl<T: IntoValue> IntoValue for Option<T> {
    fn into_value(self) -> Option<String> {
        self.and_then(IntoValue::into_value)
    }
}
