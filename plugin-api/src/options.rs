//! A scheme's own options: the keys of its `[[scheme]]` table other than `name`, `plugin`
//! and `path`. The host converts the TOML to [`OptionEntry`]s; a scheme reads them with the
//! typed getters on [`Options`], whose errors name the key. Keys the scheme never read are
//! refused after `Scheme::new` returns, with a suggestion when one is close.

use std::cell::RefCell;
use std::time::Duration;

use abi_stable::std_types::{ROption, RStr, RString, RVec};
use abi_stable::StableAbi;

use crate::scheme::SchemeError;

/// One option value. Tables are not options; lists hold strings only.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum OptionValue {
    Str(RString),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrList(RVec<RString>),
}

impl OptionValue {
    fn kind(&self) -> &'static str {
        match self {
            OptionValue::Str(_) => "a string",
            OptionValue::Int(_) => "an integer",
            OptionValue::Float(_) => "a number",
            OptionValue::Bool(_) => "a boolean",
            OptionValue::StrList(_) => "a list of strings",
        }
    }
}

/// What kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// A string (`str`, `str_or`, `keyword_or`, `quotable_or`, `required_str`).
    Text,
    Boolean,
    Integer,
    /// `"30s"`, `"10m"`, `"10h"`, `"7d"` or seconds.
    Duration,
    /// A list of strings.
    List,
}

impl OptionKind {
    /// The name `authhost plugin info` shows.
    pub const fn name(self) -> &'static str {
        match self {
            OptionKind::Text => "string",
            OptionKind::Boolean => "boolean",
            OptionKind::Integer => "integer",
            OptionKind::Duration => "duration",
            OptionKind::List => "list",
        }
    }
}

/// One option a scheme declares (`Scheme::OPTIONS`): its name, kind, default and a line of
/// help, for `authhost plugin info` and for `authhost check`, which refuses a wrong key or
/// kind before the scheme's constructor runs.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: RStr<'static>,
    /// `string`, `boolean`, `integer`, `duration` or `list` (what [`OptionKind::name`] gives);
    /// text, so that later kinds do not change the layout.
    pub kind: RStr<'static>,
    /// The default, as the help shows it; empty when there is none.
    pub default: RStr<'static>,
    pub help: RStr<'static>,
}

impl OptionSpec {
    pub const fn new(
        name: &'static str,
        kind: OptionKind,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        OptionSpec {
            name: RStr::from_str(name),
            kind: RStr::from_str(kind.name()),
            default: RStr::from_str(default),
            help: RStr::from_str(help),
        }
    }

    /// Why `value` does not fit this option's kind; `None` when it does (or the kind is
    /// one this plugin-api does not know: the scheme's own getter decides).
    pub fn mismatch(&self, value: &OptionValue) -> Option<String> {
        let fits = match (self.kind.as_str(), value) {
            ("string", OptionValue::Str(_)) | ("boolean", OptionValue::Bool(_)) => true,
            ("integer", OptionValue::Int(_)) | ("list", OptionValue::StrList(_)) => true,
            ("duration", OptionValue::Str(_) | OptionValue::Int(_)) => true,
            ("string" | "boolean" | "integer" | "duration" | "list", _) => false,
            _ => true,
        };
        (!fits).then(|| format!("expected {}, found {}", article(self.kind.as_str()), value.kind()))
    }
}

fn article(kind: &str) -> String {
    match kind {
        "integer" => "an integer".to_owned(),
        "list" => "a list of strings".to_owned(),
        "boolean" => "true or false".to_owned(),
        other => format!("a {other}"),
    }
}

/// One `key = value` of a scheme's table.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct OptionEntry {
    pub key: RString,
    pub value: OptionValue,
}

impl OptionEntry {
    pub fn new(key: impl Into<String>, value: OptionValue) -> Self {
        OptionEntry { key: RString::from(key.into()), value }
    }

    /// A `key = value` of a TOML table; `None` for a value no option can hold (a table, a
    /// date, a list of anything but strings).
    #[cfg(feature = "toml")]
    pub fn from_toml(key: &str, value: &toml::Value) -> Option<Self> {
        let value = match value {
            toml::Value::String(s) => OptionValue::Str(s.as_str().into()),
            toml::Value::Integer(i) => OptionValue::Int(*i),
            toml::Value::Float(f) => OptionValue::Float(*f),
            toml::Value::Boolean(b) => OptionValue::Bool(*b),
            toml::Value::Array(items) => {
                OptionValue::StrList(items.iter().map(|v| v.as_str().map(Into::into)).collect::<Option<_>>()?)
            }
            _ => return None,
        };
        Some(OptionEntry::new(key, value))
    }
}

/// Checks options against what a scheme declares, before its constructor runs: an
/// undeclared key (with a close declared one, if any) or a value of the wrong kind is an
/// error naming the key. A scheme that declares nothing passes: its getters check.
pub fn check_declared(declared: &[OptionSpec], entries: &[OptionEntry]) -> Result<(), SchemeError> {
    if declared.is_empty() {
        return Ok(());
    }
    for entry in entries {
        let key = entry.key.as_str();
        let Some(spec) = declared.iter().find(|spec| spec.name.as_str() == key) else {
            let names: Vec<&str> = declared.iter().map(|spec| spec.name.as_str()).collect();
            return Err(SchemeError::option(key, unknown_option(closest(key, &names))));
        };
        if let Some(problem) = spec.mismatch(&entry.value) {
            return Err(SchemeError::option(key, problem));
        }
    }
    Ok(())
}

/// "unknown option", with a suggestion when there is one.
pub(crate) fn unknown_option(close: Option<&str>) -> String {
    match close {
        Some(close) => format!("unknown option (did you mean \"{close}\"?)"),
        None => "unknown option".to_owned(),
    }
}

/// Why a scheme could not be built from its options; `key` names the option at fault.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub key: ROption<RString>,
    pub message: RString,
}

/// A scheme's options, read through typed getters that remember which keys were read.
#[derive(Debug)]
pub struct Options<'a> {
    entries: &'a [OptionEntry],
    read: RefCell<Vec<&'static str>>,
}

impl<'a> Options<'a> {
    pub fn new(entries: &'a [OptionEntry]) -> Self {
        Options { entries, read: RefCell::new(Vec::new()) }
    }

    fn get(&self, key: &'static str) -> Option<&'a OptionValue> {
        let mut read = self.read.borrow_mut();
        if !read.contains(&key) {
            read.push(key);
        }
        self.entries.iter().find(|e| e.key.as_str() == key).map(|e| &e.value)
    }

    /// A string option, if set.
    pub fn str(&self, key: &'static str) -> Result<Option<&'a str>, SchemeError> {
        match self.get(key) {
            None => Ok(None),
            Some(OptionValue::Str(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A string option that must be set: a scheme without it is refused at start-up,
    /// naming the key.
    pub fn required_str(&self, key: &'static str) -> Result<&'a str, SchemeError> {
        self.str(key)?.ok_or_else(|| SchemeError::option(key, "missing: this scheme needs it"))
    }

    /// A secret, given in the environment variable that `env_key` names (better: configs
    /// get copied and committed) or inline as `key`; exactly one of the two, of at least
    /// `min_bytes` bytes. Errors name the key and never show the secret.
    pub fn secret(
        &self,
        key: &'static str,
        env_key: &'static str,
        min_bytes: usize,
    ) -> Result<Vec<u8>, SchemeError> {
        let (secret, from) = match (self.str(key)?, self.str(env_key)?) {
            (Some(_), Some(_)) => {
                return Err(SchemeError::option(key, format!("give {key} or {env_key}, not both")));
            }
            (Some(secret), None) => (secret.as_bytes().to_vec(), key),
            (None, Some(var)) => {
                let value = std::env::var(var).map_err(|_| {
                    SchemeError::option(
                        env_key,
                        format!("${var} is not set; export a random secret of at least {min_bytes} bytes"),
                    )
                })?;
                (value.into_bytes(), env_key)
            }
            (None, None) => {
                return Err(SchemeError::option(
                    env_key,
                    format!("missing: give {env_key} = \"NAME\" (an environment variable) or {key}, of at least {min_bytes} bytes"),
                ));
            }
        };
        if secret.len() < min_bytes {
            return Err(SchemeError::option(
                from,
                format!("the secret is {} bytes; use at least {min_bytes} random bytes", secret.len()),
            ));
        }
        Ok(secret)
    }

    /// A string option, or `default`.
    pub fn str_or(&self, key: &'static str, default: &'a str) -> Result<&'a str, SchemeError> {
        Ok(self.str(key)?.unwrap_or(default))
    }

    /// An `Authorization` keyword (`Token`, `Bearer`): one word of visible ASCII.
    pub fn keyword_or(&self, key: &'static str, default: &'a str) -> Result<&'a str, SchemeError> {
        let keyword = self.str_or(key, default)?;
        if keyword.is_empty() || !keyword.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SchemeError::option(
                key,
                "must be one word of visible ASCII, like \"Token\" or \"Bearer\"",
            ));
        }
        Ok(keyword)
    }

    /// A value for a quoted challenge parameter (`realm="api"`): no quotes, backslashes or
    /// control characters.
    pub fn quotable_or(&self, key: &'static str, default: &'a str) -> Result<&'a str, SchemeError> {
        let text = self.str_or(key, default)?;
        if text.contains(['"', '\\']) || text.chars().any(char::is_control) {
            return Err(SchemeError::option(
                key,
                "must not contain quotes, backslashes or control characters",
            ));
        }
        Ok(text)
    }

    /// A boolean option, or `default`.
    pub fn bool_or(&self, key: &'static str, default: bool) -> Result<bool, SchemeError> {
        match self.get(key) {
            None => Ok(default),
            Some(OptionValue::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong_type(key, "true or false", other)),
        }
    }

    /// An integer option, if set.
    pub fn int(&self, key: &'static str) -> Result<Option<i64>, SchemeError> {
        match self.get(key) {
            None => Ok(None),
            Some(OptionValue::Int(i)) => Ok(Some(*i)),
            Some(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    /// A list of strings, if set.
    pub fn list(&self, key: &'static str) -> Result<Option<Vec<&'a str>>, SchemeError> {
        match self.get(key) {
            None => Ok(None),
            Some(OptionValue::StrList(items)) => Ok(Some(items.iter().map(|s| s.as_str()).collect())),
            Some(other) => Err(wrong_type(key, "a list of strings", other)),
        }
    }

    /// A duration: `"30s"`, `"10m"`, `"10h"`, `"7d"`, or an integer number of seconds.
    pub fn duration(&self, key: &'static str) -> Result<Option<Duration>, SchemeError> {
        let bounded = |d: Duration| {
            if d > MAX_DURATION {
                Err(SchemeError::option(key, "is too long: use at most 36500d (100 years)"))
            } else {
                Ok(Some(d))
            }
        };
        match self.get(key) {
            None => Ok(None),
            Some(OptionValue::Int(secs)) => u64::try_from(*secs)
                .map_err(|_| SchemeError::option(key, "must not be negative"))
                .and_then(|s| bounded(Duration::from_secs(s))),
            Some(OptionValue::Str(text)) => match parse_duration(text) {
                Some(d) => bounded(d),
                None => Err(SchemeError::option(
                    key,
                    format!("{:?} is not a duration (use {DURATION_FORMS})", text.as_str()),
                )),
            },
            Some(other) => Err(wrong_type(key, "a duration", other)),
        }
    }

    /// Keys present in the table that the scheme never read, each with a close read key.
    pub fn unread(&self) -> Vec<(&'a str, Option<&'static str>)> {
        let read = self.read.borrow();
        self.entries
            .iter()
            .map(|e| e.key.as_str())
            .filter(|key| !read.contains(key))
            .map(|key| (key, closest(key, &read)))
            .collect()
    }
}

fn wrong_type(key: &str, expected: &str, found: &OptionValue) -> SchemeError {
    SchemeError::option(key, format!("expected {expected}, found {}", found.kind()))
}

/// The longest duration an option may give (100 years): longer ones are refused at load,
/// so that no deadline computed from one can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How durations are written, for messages: what `parse_duration` takes.
pub const DURATION_FORMS: &str = "\"30s\", \"10m\", \"10h\", \"7d\", \"250ms\", \"1h 30m\" or seconds";

/// Parses a bare number of seconds, or what `humantime` reads: `"30s"`, `"10m"`, `"10h"`,
/// `"7d"`, `"250ms"`, `"1h 30m"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(text).ok()
}

fn closest<'c>(key: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (edit_distance(key, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<OptionEntry> {
        vec![
            OptionEntry::new("keywrd", OptionValue::Str("Bearer".into())),
            OptionEntry::new("ttl", OptionValue::Str("10h".into())),
            OptionEntry::new("create", OptionValue::Str("yes".into())),
        ]
    }

    #[test]
    fn required_and_secret_options_name_their_keys() {
        let none = Options::new(&[]);
        assert_eq!(none.required_str("issuer").unwrap_err().option_key(), Some("issuer"));
        assert_eq!(none.secret("secret", "secret_env", 32).unwrap_err().option_key(), Some("secret_env"));
        let short = [OptionEntry::new("secret", OptionValue::Str("tiny".into()))];
        let err = Options::new(&short).secret("secret", "secret_env", 32).unwrap_err();
        assert_eq!(err.option_key(), Some("secret"));
        assert!(!err.to_string().contains("tiny"), "never the secret itself: {err}");
        let long = [OptionEntry::new("secret", OptionValue::Str("x".repeat(32).into()))];
        assert_eq!(Options::new(&long).secret("secret", "secret_env", 32).unwrap().len(), 32);
        let both = [
            OptionEntry::new("secret", OptionValue::Str("x".repeat(32).into())),
            OptionEntry::new("secret_env", OptionValue::Str("PATH".into())),
        ];
        assert!(Options::new(&both)
            .secret("secret", "secret_env", 32)
            .unwrap_err()
            .to_string()
            .contains("not both"));
    }

    #[test]
    fn unread_keys_come_with_a_suggestion() {
        let entries = entries();
        let options = Options::new(&entries);
        assert_eq!(options.str_or("keyword", "Token").unwrap(), "Token");
        assert_eq!(options.duration("ttl").unwrap(), Some(Duration::from_secs(36_000)));
        assert_eq!(options.unread(), vec![("keywrd", Some("keyword")), ("create", None)]);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key() {
        let entries = entries();
        let options = Options::new(&entries);
        let err = options.bool_or("create", false).unwrap_err();
        assert_eq!(err.option_key(), Some("create"));
        assert_eq!(err.to_string(), "create: expected true or false, found a string");
    }

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10 fortnights"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("99999999999999999999999d"), None);
    }
}
