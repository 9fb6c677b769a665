//! Deserialization that keeps going after an error, and the field parsers the schema uses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};
use url::Url;

use super::Problem;
use super::path::{join_index, join_key, parent};
use super::yaml::{Mapping, Pos, Value};

/// Caps the retries on one item; each retry removes a key, so this only matters for huge items.
const MAX_ATTEMPTS: usize = 64;

/// Collects problems and knows where each path is in the text.
#[derive(Debug)]
pub(super) struct Report<'a> {
    /// Positions by path, from reading the YAML.
    positions: &'a HashMap<String, Pos>,
    /// Everything found so far.
    pub(super) problems: Vec<Problem>,
    /// Paths whose value was dropped after a problem, so that follow-on complaints about them
    /// being absent are not reported a second time.
    removed: HashSet<String>,
}

impl<'a> Report<'a> {
    /// An empty report over the given positions.
    pub(super) fn new(positions: &'a HashMap<String, Pos>) -> Self {
        Report {
            positions,
            problems: Vec::new(),
            removed: HashSet::new(),
        }
    }

    /// Records a problem at `path`, located at the nearest enclosing path that has a position.
    /// Problems at or under a path whose value was dropped are left out: the value there is a
    /// default or placeholder, not what was written, and the drop was reported already.
    pub(super) fn add(&mut self, path: &str, message: impl Into<String>) {
        let mut current = Some(path);
        while let Some(path) = current {
            if self.removed.contains(path) {
                return;
            }
            current = parent(path);
        }
        let pos = self.position(path);
        self.problems.push(Problem::at(path, pos, message));
    }

    /// The position of `path`, or of the nearest enclosing path that has one.
    pub(super) fn position(&self, path: &str) -> Option<Pos> {
        let mut current = Some(path);
        while let Some(path) = current {
            if let Some(pos) = self.positions.get(path) {
                return Some(*pos);
            }
            current = parent(path);
        }
        None
    }

    /// True when the value at `path` was dropped because of a problem already reported.
    pub(super) fn was_removed(&self, path: &str) -> bool {
        self.removed.contains(path)
    }
}

/// One step of a path reported by serde_path_to_error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
    /// Enum variants and the like, which have no place in a YAML path.
    Other,
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            _ => Segment::Other,
        })
        .collect()
}

fn render(base: &str, segments: &[Segment]) -> String {
    segments
        .iter()
        .fold(base.to_owned(), |path, segment| match segment {
            Segment::Key(key) => join_key(&path, key),
            Segment::Index(index) => join_index(&path, *index),
            Segment::Other => path,
        })
}

/// Stand-ins tried, in order, for a required key that is missing or was dropped, so that the
/// rest of the item can still be built and checked. Problems under such a key are suppressed.
fn placeholders() -> [Value; 5] {
    [
        Value::Array(Vec::new()),
        Value::String(String::new()),
        Value::Object(Mapping::new()),
        Value::Number(0.into()),
        Value::Bool(false),
    ]
}

/// Deserializes `value` (found at `base`) and reports every problem in it, not just the first.
///
/// serde stops at the first error, so after each one the offending key is removed and the
/// item is tried again; the key then takes its default, and later keys get checked too.
/// A required key that ends up absent gets a placeholder, so that the item still comes out
/// and the checks made on it afterwards still run.
/// `label` names what the item is (e.g. "a url function") in unknown-key messages.
/// Returns `None` when the item cannot be built at all.
pub(super) fn deserialize<T: DeserializeOwned>(
    report: &mut Report<'_>,
    value: &Value,
    base: &str,
    label: Option<&str>,
) -> Option<T> {
    let mut work = value.clone();
    // Which placeholder each stood-in key has, by its segments.
    let mut standing_in: Vec<(Vec<Segment>, usize)> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let error = match serde_path_to_error::deserialize::<_, T>(&work) {
            Ok(item) => return Some(item),
            Err(error) => error,
        };
        let segs = segments(error.path());
        let message = error.inner().to_string();
        let path = render(base, &segs);
        if let Some(field) = quoted_after(&message, "missing field `") {
            let mut key = segs.clone();
            key.push(Segment::Key(field.to_owned()));
            let key_path = render(base, &key);
            if !report.was_removed(&key_path) {
                report.add(&path, format!("missing required key `{field}`"));
                report.removed.insert(key_path);
            }
            let [first, ..] = placeholders();
            if !set(&mut work, &key, first) {
                return None;
            }
            standing_in.push((key, 0));
            continue;
        }
        let stand_in = standing_in
            .iter_mut()
            .find(|(key, _)| segs.starts_with(key));
        if let Some((key, index)) = stand_in {
            *index += 1;
            let next = placeholders().into_iter().nth(*index);
            if next.is_some_and(|next| set(&mut work, key, next)) {
                continue;
            }
            return None;
        }
        report.add(&path, humanize(&message, label.filter(|_| segs.len() == 1)));
        // Removing a whole key rather than a list item keeps the indexes of the remaining items
        // equal to the ones in the text.
        let last_key = segs.iter().rposition(|s| matches!(s, Segment::Key(_)))?;
        let target = &segs[..=last_key];
        if !remove(&mut work, target) {
            return None;
        }
        report.removed.insert(render(base, target));
    }
    None
}

/// The mapping that holds the last key of `path`, and that key.
fn holder<'v, 'p>(value: &'v mut Value, path: &'p [Segment]) -> Option<(&'v mut Mapping, &'p str)> {
    let (last, rest) = path.split_last()?;
    let mut current = value;
    for segment in rest {
        current = match segment {
            Segment::Key(key) => current.as_object_mut()?.get_mut(key.as_str())?,
            Segment::Index(index) => current.as_array_mut()?.get_mut(*index)?,
            Segment::Other => return None,
        };
    }
    match last {
        Segment::Key(key) => Some((current.as_object_mut()?, key.as_str())),
        _ => None,
    }
}

fn remove(value: &mut Value, path: &[Segment]) -> bool {
    holder(value, path).is_some_and(|(map, key)| map.remove(key).is_some())
}

fn set(value: &mut Value, path: &[Segment], new: Value) -> bool {
    holder(value, path)
        .map(|(map, key)| map.insert(key.to_owned(), new))
        .is_some()
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(quoted, _)| quoted)
}

/// Rewords serde's messages for people who write YAML rather than Rust.
fn humanize(message: &str, label: Option<&str>) -> String {
    let message = message.replace('\n', " ");
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'));
    if let Some((key, rest)) = unknown {
        let rest = if rest.starts_with(", there are no fields") {
            ""
        } else {
            rest
        };
        let owner = label.map(|l| format!(" for {l}")).unwrap_or_default();
        return format!("unknown key `{key}`{owner}{rest}");
    }
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message;
    };
    let head = head.replace("unit value", "null");
    let head = match head.strip_suffix(": map") {
        Some(start) => format!("{start}: mapping"),
        None => head,
    };
    let expected = match expected {
        "usize" | "u64" => "a non-negative integer",
        "u32" => "an integer from 0 to 4294967295",
        "i32" => "an integer from -2147483648 to 2147483647",
        "i16" => "an integer from -32768 to 32767",
        "a sequence" => "a list",
        "a map" => "a mapping",
        other if other.starts_with("struct ") => "a mapping",
        other => other,
    };
    format!("{head}, expected {expected}")
}

/// Parses durations written like `30s` or `200ms`.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"30s\" or \"200ms\"")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim())
                .map_err(|error| E::custom(format!("invalid duration {text:?}: {error}")))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration {n}: a unit is needed, such as \"{n}s\" or \"{n}ms\""
            )))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration {n}: a unit is needed, such as \"30s\" or \"200ms\""
            )))
        }

        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration {n}: a unit is needed, such as \"30s\" or \"200ms\""
            )))
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// Parses a size in bytes: a number, or a number with a unit (`B`, `KiB`, `MiB`, `GiB`).
pub(super) fn byte_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size such as 1048576, \"512KiB\" or \"1MiB\"")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<usize, E> {
            let trimmed = text.trim();
            let split = trimmed
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(trimmed.len());
            let (digits, unit) = trimmed.split_at(split);
            let scale: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => {
                    return Err(E::custom(format!(
                        "invalid size {text:?}: unknown unit {other:?}, expected B, KiB, MiB or GiB"
                    )));
                }
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| E::custom(format!("invalid size {text:?}")))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::custom(format!("invalid size {n}: too large")))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::custom(format!("invalid size {n}")))
        }
    }

    deserializer.deserialize_any(SizeVisitor)
}

/// Parses `IP:port`.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        D::Error::custom(format!(
            "invalid address {text:?}: expected an IP address and a port, such as 127.0.0.1:9092"
        ))
    })
}

/// A string, or a number or boolean taken as its text (`retention.ms: 86400000`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A mapping of text to text, where numbers and booleans count as text; null means empty.
pub(super) fn string_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, Scalar>>::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect())
}

/// A librdkafka property value: text (numbers and booleans count as text), or a secret read
/// as the config is loaded, `{env: NAME}` or `{file: PATH}`, so that SASL passwords need not
/// be written in the file.
struct ClientValue(String);

impl<'de> Deserialize<'de> for ClientValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClientValueVisitor;

        impl<'de> Visitor<'de> for ClientValueVisitor {
            type Value = ClientValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean, or {env: NAME} or {file: PATH}")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClientValue, E> {
                Ok(ClientValue(v.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ClientValue, E> {
                Ok(ClientValue(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ClientValue, E> {
                Ok(ClientValue(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ClientValue, E> {
                Ok(ClientValue(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ClientValue, E> {
                Ok(ClientValue(v.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ClientValue, A::Error> {
                use serde::de::Error;
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(A::Error::custom("expected {env: NAME} or {file: PATH}"));
                };
                let read: fn(&str) -> Result<String, String> = match kind.as_str() {
                    "env" => |name| {
                        std::env::var(name)
                            .map_err(|_| format!("environment variable {name} is not set"))
                    },
                    "file" => |path| {
                        std::fs::read_to_string(path)
                            .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                            .map_err(|err| format!("cannot read {path}: {err}"))
                    },
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown secret source {other:?}: expected env or file"
                        )));
                    }
                };
                let source: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(
                        "expected one of env or file, not both or more",
                    ));
                }
                let value = read(&source).map_err(A::Error::custom)?;
                Ok(ClientValue(value))
            }
        }

        deserializer.deserialize_any(ClientValueVisitor)
    }
}

/// librdkafka properties: text, or secrets from the environment or a file.
pub(super) fn client_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, ClientValue>>::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect())
}

/// A list of text, where numbers and booleans count as text (`command: [sleep, 5]`).
pub(super) fn string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let list = Vec::<Scalar>::deserialize(deserializer)?;
    Ok(list.into_iter().map(|item| item.0).collect())
}

/// Like [`string_list`], with null meaning absent.
pub(super) fn optional_string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let list = Option::<Vec<Scalar>>::deserialize(deserializer)?;
    Ok(list.map(|list| list.into_iter().map(|item| item.0).collect()))
}

/// An absolute URL, with the offending text in the message.
pub(super) fn url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    Url::parse(text.trim())
        .map_err(|error| D::Error::custom(format!("invalid URL {text:?}: {error}")))
}

/// Like [`url()`], with null meaning absent.
pub(super) fn optional_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Url>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|text| {
        Url::parse(text.trim())
            .map_err(|error| D::Error::custom(format!("invalid URL {text:?}: {error}")))
    })
    .transpose()
}
