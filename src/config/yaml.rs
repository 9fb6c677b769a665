//! Turns YAML text into a tree of [`Value`]s plus the position of every key.
//!
//! The tree is built here from yaml-rust2's events: that keeps a line and column for every
//! path and lets duplicate keys become ordinary problems next to all the others. The tree is
//! `serde_json`'s `Value` (with its keys in the file's order), which serde deserializes the
//! config's types from and which [`super::de`] can take keys out of; YAML's own types end
//! here, as the core schema resolves them.

use std::collections::HashMap;

use serde_json::Number;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Problem;
use super::path::{join_index, join_key};

/// A YAML node, its scalars resolved.
pub(super) type Value = serde_json::Value;

/// A YAML mapping: text keys, in the file's order.
pub(super) type Mapping = serde_json::Map<String, Value>;

/// Deeper documents are refused, because dropping and deserializing a `Value` recurse.
const MAX_DEPTH: usize = 128;

/// Aliases copy their anchor's tree; this caps the copies so a few lines cannot expand into
/// gigabytes ("billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    /// Line, counted from 1.
    pub(super) line: usize,
    /// Column, counted from 1.
    pub(super) column: usize,
}

impl From<Marker> for Pos {
    fn from(mark: Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Pos {
            line: mark.line().max(1),
            column: mark.col() + 1,
        }
    }
}

/// What was read from the text.
#[derive(Debug)]
pub(super) struct Document {
    /// The single document, or `None` when the text holds no document at all.
    pub(super) root: Option<Value>,
    /// Position of each key (or sequence item), by path such as `triggers[0].delivery.timeout`.
    pub(super) positions: HashMap<String, Pos>,
    /// Problems found while reading, such as duplicate keys; reading went on past them.
    pub(super) problems: Vec<Problem>,
}

/// Reads `text`. A syntax error ends reading and is returned as the only problem.
pub(super) fn read(text: &str) -> Result<Document, Problem> {
    // Editors that write a byte order mark hide it, and yaml-rust2 would take it as part of the
    // first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(problem) = forbidden_character(text) {
        return Err(problem);
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|error| {
            let pos = Pos::from(*error.marker());
            Problem::at(
                "",
                Some(pos),
                format!("YAML syntax error: {}", error.info()),
            )
        })?;
        let pos = Pos::from(mark);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    builder.problems.push(Problem::at(
                        "",
                        Some(pos),
                        "only one YAML document is allowed; the rest of the file was ignored",
                    ));
                    break;
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::Scalar(text, style, anchor, tag) => {
                builder.enter(pos);
                let value = resolve_scalar(&text, style, tag.as_ref());
                builder.finish(value, Some(text), anchor, pos);
            }
            Event::Alias(anchor) => {
                builder.enter(pos);
                let value = builder.alias(anchor, pos);
                let key = value.as_str().map(str::to_owned);
                builder.finish(value, key, 0, pos);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if builder.stack.len() >= MAX_DEPTH {
                    return Err(Problem::at(
                        "",
                        Some(pos),
                        format!("the document is nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                let slot = builder.enter(pos);
                let container = if matches!(event, Event::SequenceStart(..)) {
                    Container::Seq(Vec::new())
                } else {
                    Container::Map {
                        map: Mapping::new(),
                        key: None,
                        seen: HashMap::new(),
                    }
                };
                builder.stack.push(Frame {
                    slot,
                    anchor,
                    pos,
                    container,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = builder.stack.pop() {
                    let value = match frame.container {
                        Container::Seq(items) => Value::Array(items),
                        Container::Map { map, .. } => Value::Object(map),
                    };
                    builder.finish(value, None, frame.anchor, frame.pos);
                }
            }
        }
    }
    Ok(Document {
        root: builder.root,
        positions: builder.positions,
        problems: builder.problems,
    })
}

/// yaml-rust2 reads a NUL as the end of the text, so without this check anything after one
/// would be silently ignored.
fn forbidden_character(text: &str) -> Option<Problem> {
    let mut line = 1;
    let mut column = 1;
    for c in text.chars() {
        let allowed = matches!(c, '\t' | '\n' | '\r' | '\u{85}' | '\u{feff}')
            || !(c.is_control() || c == '\u{fffe}' || c == '\u{ffff}');
        if !allowed {
            return Some(Problem::at(
                "",
                Some(Pos { line, column }),
                format!(
                    "the text contains the character U+{:04X}, which YAML does not allow",
                    u32::from(c)
                ),
            ));
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    None
}

/// Where a node goes once it is complete.
#[derive(Debug)]
enum Slot {
    /// It is the document itself.
    Root,
    /// It is the key of the next mapping entry.
    Key,
    /// It is a value; the path is `None` where positions must not be recorded (inside a complex
    /// key, or under a duplicate key whose first occurrence already owns the path).
    Value {
        /// Where it is, if recorded.
        path: Option<String>,
        /// True for a sequence item.
        item: bool,
    },
}

impl Slot {
    fn path(&self) -> Option<&str> {
        match self {
            Slot::Root => Some(""),
            Slot::Key => None,
            Slot::Value { path, .. } => path.as_deref(),
        }
    }
}

/// The key of the mapping entry whose value is being read.
#[derive(Debug)]
struct PendingKey {
    /// The key's text.
    name: String,
    /// False when the entry is to be dropped (duplicate or unusable key).
    keep: bool,
}

/// A sequence or mapping whose end has not been reached yet.
#[derive(Debug)]
enum Container {
    /// The items so far.
    Seq(Vec<Value>),
    /// The entries so far.
    Map {
        /// Entries kept.
        map: Mapping,
        /// The key whose value comes next, if a key has been read.
        key: Option<PendingKey>,
        /// Where each key was first seen, to report duplicates.
        seen: HashMap<String, Pos>,
    },
}

/// An open container.
#[derive(Debug)]
struct Frame {
    /// Where it goes once complete.
    slot: Slot,
    /// Its anchor id, or 0 for none.
    anchor: usize,
    /// Where it starts.
    pos: Pos,
    /// What it holds so far.
    container: Container,
}

/// Assembles the tree from events.
#[derive(Debug, Default)]
struct Builder {
    /// Containers from the outermost to the innermost open one.
    stack: Vec<Frame>,
    /// The document, once complete.
    root: Option<Value>,
    /// See [`Document::positions`].
    positions: HashMap<String, Pos>,
    /// See [`Document::problems`].
    problems: Vec<Problem>,
    /// Anchored values with their node counts, by anchor id.
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes copied by aliases so far.
    alias_nodes: usize,
    /// Whether the alias budget problem was reported, so it is reported once.
    alias_budget_reported: bool,
}

impl Builder {
    /// Decides where a node starting at `pos` belongs and records its position when it is a
    /// sequence item.
    fn enter(&mut self, pos: Pos) -> Slot {
        let Some(frame) = self.stack.last() else {
            self.positions.insert(String::new(), pos);
            return Slot::Root;
        };
        let parent = frame.slot.path().map(str::to_owned);
        match &frame.container {
            Container::Seq(items) => {
                let path = parent.map(|p| join_index(&p, items.len()));
                if let Some(path) = &path {
                    self.positions.insert(path.clone(), pos);
                }
                Slot::Value { path, item: true }
            }
            Container::Map { key: None, .. } => Slot::Key,
            Container::Map { key: Some(key), .. } => Slot::Value {
                path: parent.filter(|_| key.keep).map(|p| join_key(&p, &key.name)),
                item: false,
            },
        }
    }

    /// Places a completed node; `text` is the scalar's source text, used when it is a key.
    fn finish(&mut self, value: Value, text: Option<String>, anchor: usize, pos: Pos) {
        if anchor > 0 {
            let size = node_count(&value);
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(value);
            return;
        };
        let parent = frame.slot.path().map(str::to_owned);
        let is_item = matches!(frame.slot, Slot::Value { item: true, .. });
        let frame_pos = &mut frame.pos;
        match &mut frame.container {
            Container::Seq(items) => items.push(value),
            Container::Map { map, key, seen } => match key.take() {
                Some(pending) => {
                    if pending.keep {
                        map.insert(pending.name, value);
                    }
                }
                None => {
                    let Some(name) = text else {
                        if let Some(parent) = &parent {
                            self.problems.push(Problem::at(
                                parent,
                                Some(pos),
                                "mapping keys must be plain text, not lists or mappings",
                            ));
                        }
                        *key = Some(PendingKey {
                            name: String::new(),
                            keep: false,
                        });
                        return;
                    };
                    let Some(parent) = parent else {
                        *key = Some(PendingKey { name, keep: false });
                        return;
                    };
                    let path = join_key(&parent, &name);
                    if let Some(first) = seen.get(&name) {
                        self.problems.push(Problem::at(
                            &path,
                            Some(pos),
                            format!(
                                "duplicate key `{name}`; it is already set at line {}",
                                first.line
                            ),
                        ));
                        *key = Some(PendingKey { name, keep: false });
                        return;
                    }
                    if seen.is_empty() && is_item {
                        // A block mapping's start event points past its first key, so the
                        // first key is the better place to point at for the whole item.
                        *frame_pos = pos;
                        self.positions.insert(parent.clone(), pos);
                    }
                    seen.insert(name.clone(), pos);
                    self.positions.insert(path, pos);
                    *key = Some(PendingKey { name, keep: true });
                }
            },
        }
    }

    /// The value an alias stands for, within the expansion budget.
    fn alias(&mut self, anchor: usize, pos: Pos) -> Value {
        let Some((value, size)) = self.anchors.get(&anchor) else {
            self.problems
                .push(Problem::at("", Some(pos), "alias to an unknown anchor"));
            return Value::Null;
        };
        self.alias_nodes = self.alias_nodes.saturating_add(*size);
        if self.alias_nodes > MAX_ALIAS_NODES {
            if !self.alias_budget_reported {
                self.alias_budget_reported = true;
                self.problems.push(Problem::at(
                    "",
                    Some(pos),
                    format!("aliases expand to more than {MAX_ALIAS_NODES} values"),
                ));
            }
            return Value::Null;
        }
        value.clone()
    }
}

fn node_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

/// The YAML 1.2 core schema: only plain scalars are typed.
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag
        && tag.handle == "tag:yaml.org,2002:"
    {
        return match tag.suffix.as_str() {
            "str" => Value::String(text.to_owned()),
            _ => resolve_plain(text),
        };
    }
    if style == TScalarStyle::Plain {
        resolve_plain(text)
    } else {
        Value::String(text.to_owned())
    }
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        // No setting takes a float: infinities and NaN stay text, which every setting that
        // wants a number refuses with the text as written.
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Value::String(text.to_owned()),
        _ => {}
    }
    if let Some(number) = parse_integer(text) {
        return number;
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric && let Some(float) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(float);
    }
    Value::String(text.to_owned())
}

fn parse_integer(text: &str) -> Option<Value> {
    let radix_digits = |prefix: &str, radix: u32| {
        let digits = text.strip_prefix(prefix)?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        u64::from_str_radix(digits, radix).ok()
    };
    if let Some(n) = radix_digits("0x", 16).or_else(|| radix_digits("0o", 8)) {
        return Some(Value::Number(n.into()));
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::Number(n.into()));
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !text.starts_with('-'))
        .map(|n| Value::Number(n.into()))
}
