//! The command-line layer: `--set key=value` and the specific flags the binary maps to keys.

use super::error::ConfigError;
use super::keys;
use super::layers::RawMap;
use super::origin::Origin;
use super::FlagValue;

pub(crate) fn apply(
    flags: &[FlagValue],
    raw: &mut RawMap,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    for flag in flags {
        let origin = Origin::Flag(if flag.flag == "--set" {
            format!("--set {}", flag.key)
        } else {
            flag.flag.clone()
        });
        let Some(spec) = keys::lookup(&flag.key) else {
            let detail = keys::suggest(&flag.key)
                .map(|near| format!("did you mean {near:?}?"))
                .unwrap_or_default();
            errors.push(ConfigError::unknown_key(&flag.key, &origin, detail));
            continue;
        };
        if spec.secret {
            warnings.push(format!(
                "{} is given on the command line ({origin}), where other users of this machine can read it; prefer the environment or the config file",
                spec.key
            ));
        }
        raw.set_text(spec, &flag.value, origin);
    }
}
