//! CloudEvents SQL (CESQL) v1.0.0: a parser and an evaluator.
//!
//! An [`Expression`] is parsed once into a tree and then evaluated against
//! any number of events. Evaluation is total, as the specification demands:
//! it always yields a [`Value`], together with the errors met on the way.
//! When an operand or argument of an operator or function had an error, that
//! operator or function yields the zero value of its return type, which is
//! how the specification treats missing attributes (section 3.2) and what
//! its conformance suite expects for other errors too.

use std::fmt;

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

/// A CESQL value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A CESQL _Boolean_.
    Boolean(bool),
    /// A CESQL _Integer_: a signed 32-bit number.
    Integer(i32),
    /// A CESQL _String_; URIs, URI references and timestamps are strings too.
    String(String),
}

impl Value {
    /// The value as JSON: `true`, `42` or `"abc"` (with JSON string escaping).
    pub fn to_json(&self) -> String {
        match self {
            Value::Boolean(b) => b.to_string(),
            Value::Integer(i) => i.to_string(),
            Value::String(s) => json_string(s),
        }
    }
}

/// Writes `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Gives an expression the event's attributes.
///
/// The event is assumed to be a valid CloudEvent, so `EXISTS` is true for the
/// required attributes `id`, `source`, `specversion` and `type` whatever this
/// returns for them (section 3.4.4).
pub trait Event {
    /// The attribute (or extension) `name`, lower-case as CloudEvents names are; `None` when the event has none.
    fn attribute(&self, name: &str) -> Option<Value>;
}

/// An expression, parsed once and evaluated many times.
#[derive(Debug, Clone)]
pub struct Expression {
    root: parser::Node,
}

impl Expression {
    /// Parses `text` as a CESQL expression.
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        parser::parse(text).map(|root| Expression { root })
    }

    /// The value and the evaluation errors (empty when none); the value follows the spec even when there are errors.
    pub fn evaluate(&self, event: &dyn Event) -> (Value, Vec<EvalError>) {
        eval::evaluate(&self.root, event)
    }
}

impl std::str::FromStr for Expression {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Expression, ParseError> {
        Expression::parse(text)
    }
}

/// Why a text is not an expression; `offset` is the byte offset in the text where it was found, and `column` its 1-based character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the text where the problem was found.
    pub offset: usize,
    /// 1-based character column of `offset`.
    pub column: usize,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl ParseError {
    /// The error's kind, which is always [`ErrorKind::Parse`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Parse
    }

    fn new(text: &str, offset: usize, message: String) -> ParseError {
        let column = text.get(..offset).map_or(0, |s| s.chars().count()) + 1;
        ParseError {
            offset,
            column,
            message,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// An error met while evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// The specification's type of the error.
    pub kind: ErrorKind,
    /// What went wrong, as a sentence.
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for EvalError {}

/// The error types of section 3.3 of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// _ParseError_: the text is not an expression.
    Parse,
    /// _MathError_: a division by zero or a result beyond 32 bits.
    Math,
    /// _CastError_: a value could not be converted to the type an operator or function needs.
    Cast,
    /// _MissingAttributeError_: the event lacks an attribute the expression reads.
    MissingAttribute,
    /// _MissingFunctionError_: no function has the called name and arity.
    MissingFunction,
    /// _FunctionEvaluationError_: a function was given arguments outside its domain.
    FunctionEvaluation,
    /// _GenericError_: any other error.
    Generic,
}

impl ErrorKind {
    /// The name the conformance suite (TCK) uses for this kind, such as `missingAttribute`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Parse => "parse",
            ErrorKind::Math => "math",
            ErrorKind::Cast => "cast",
            ErrorKind::MissingAttribute => "missingAttribute",
            ErrorKind::MissingFunction => "missingFunction",
            ErrorKind::FunctionEvaluation => "functionEvaluation",
            ErrorKind::Generic => "generic",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
