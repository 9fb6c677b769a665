//! Evaluates an expression tree against an event.
//!
//! Every node yields a value. A node whose operands or arguments met an
//! error yields the zero value of its return type (section 3.2 for missing
//! attributes, section 3.3 for the rest); errors a node raises itself, such
//! as a failed implicit cast or a division by zero, yield the value the
//! specification defines for that case.

use std::borrow::Cow;
use std::ops::Range;

use super::lexer::parse_integer;
use super::parser::{BinaryOp, Function, Node, Piece};
use super::{ErrorKind, EvalError, Event, Value, json_string};

/// A value during evaluation; strings from literals stay borrowed from the tree.
enum V<'a> {
    Bool(bool),
    Int(i32),
    Str(Cow<'a, str>),
}

impl<'a> V<'a> {
    fn of(value: &'a Value) -> V<'a> {
        match value {
            Value::Boolean(b) => V::Bool(*b),
            Value::Integer(i) => V::Int(*i),
            Value::String(s) => V::Str(Cow::Borrowed(s)),
        }
    }

    fn owned(value: Value) -> V<'a> {
        match value {
            Value::Boolean(b) => V::Bool(b),
            Value::Integer(i) => V::Int(i),
            Value::String(s) => V::Str(Cow::Owned(s)),
        }
    }

    fn into_value(self) -> Value {
        match self {
            V::Bool(b) => Value::Boolean(b),
            V::Int(i) => Value::Integer(i),
            V::Str(s) => Value::String(s.into_owned()),
        }
    }

    const EMPTY: V<'static> = V::Str(Cow::Borrowed(""));
}

/// The attributes every valid event has, which `EXISTS` must call present.
const REQUIRED: [&str; 4] = ["id", "source", "specversion", "type"];

pub(super) fn evaluate(root: &Node, event: &dyn Event) -> (Value, Vec<EvalError>) {
    let mut evaluator = Evaluator {
        event,
        errors: Vec::new(),
    };
    let value = evaluator.eval(root).into_value();
    (value, evaluator.errors)
}

/// Quotes a string for a message, shortened so that messages stay readable.
fn quote(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", json_string(s.get(..end).unwrap_or_default())),
        None => json_string(s),
    }
}

/// The byte offset of the character at index `chars`, or the length when there are fewer.
fn byte_at(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

fn slice(s: Cow<'_, str>, range: Range<usize>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(range).unwrap_or_default()),
        Cow::Owned(o) => Cow::Owned(o.get(range).unwrap_or_default().to_owned()),
    }
}

fn char_count(s: &str) -> i64 {
    i64::try_from(s.chars().count()).unwrap_or(i64::MAX)
}

/// Casts to _String_, which never fails (section 3.7).
fn to_str(v: V<'_>) -> Cow<'_, str> {
    match v {
        V::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        V::Int(i) => Cow::Owned(i.to_string()),
        V::Str(s) => s,
    }
}

/// Whether `text` matches a compiled `LIKE` pattern.
///
/// On a mismatch the most recent `%` absorbs one more character and matching
/// resumes after it; earlier `%`s never need to be revisited, so this runs
/// in time proportional to the product of the lengths, without recursion.
fn like(text: &str, pattern: &[Piece]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    loop {
        let c = text.get(t..).and_then(|rest| rest.chars().next());
        match (pattern.get(p), c) {
            (Some(Piece::Any), _) => {
                p += 1;
                retry = Some((p, t));
                continue;
            }
            (Some(Piece::One), Some(c)) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (Some(Piece::Char(pc)), Some(c)) if *pc == c => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        let Some((rp, rt)) = retry else {
            return false;
        };
        let Some(c) = text.get(rt..).and_then(|rest| rest.chars().next()) else {
            return false;
        };
        retry = Some((rp, rt + c.len_utf8()));
        (p, t) = (rp, rt + c.len_utf8());
    }
}

struct Evaluator<'e> {
    event: &'e dyn Event,
    errors: Vec<EvalError>,
}

impl Evaluator<'_> {
    fn fail(&mut self, kind: ErrorKind, message: String) {
        self.errors.push(EvalError { kind, message });
    }

    /// Whether errors were raised since `mark`, an earlier length of the error list.
    fn failed_since(&self, mark: usize) -> bool {
        self.errors.len() > mark
    }

    /// Casts to _Boolean_ (section 3.7); a string other than "true" or "false" in any case is a _CastError_ and `false`.
    fn cast_bool(&mut self, v: &V<'_>) -> bool {
        match v {
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::Str(s) if s.eq_ignore_ascii_case("true") => true,
            V::Str(s) if s.eq_ignore_ascii_case("false") => false,
            V::Str(s) => {
                self.cast_failed(s, "a Boolean");
                false
            }
        }
    }

    /// Casts to _Integer_ (section 3.7); a string that is not a 32-bit base-10 integer is a _CastError_ and `0`.
    fn cast_int(&mut self, v: &V<'_>) -> i32 {
        match v {
            V::Bool(b) => i32::from(*b),
            V::Int(i) => *i,
            V::Str(s) => match parse_integer(s) {
                Some(i) => i,
                None => {
                    self.cast_failed(s, "an Integer");
                    0
                }
            },
        }
    }

    /// Whether `y` equals `x` once cast to the type of `x`.
    fn equals_as(&mut self, x: &V<'_>, y: V<'_>) -> bool {
        match x {
            V::Bool(b) => self.cast_bool(&y) == *b,
            V::Int(i) => self.cast_int(&y) == *i,
            V::Str(s) => **s == *to_str(y),
        }
    }

    fn eval<'a>(&mut self, node: &'a Node) -> V<'a> {
        match node {
            Node::Literal(value) => V::of(value),
            Node::Attribute(name) => match self.event.attribute(name) {
                Some(value) => V::owned(value),
                None => {
                    self.missing_attribute(name);
                    // The type of a missing attribute's expression is unknown, so it is a Boolean.
                    V::Bool(false)
                }
            },
            Node::Exists(name) => {
                V::Bool(REQUIRED.contains(&&**name) || self.event.attribute(name).is_some())
            }
            Node::Not(operand) => {
                let mark = self.errors.len();
                let v = self.eval(operand);
                V::Bool(!self.failed_since(mark) && !self.cast_bool(&v))
            }
            Node::Negate(operand) => {
                let mark = self.errors.len();
                let v = self.eval(operand);
                if self.failed_since(mark) {
                    return V::Int(0);
                }
                let i = self.cast_int(&v);
                V::Int(
                    i.checked_neg()
                        .unwrap_or_else(|| self.overflow(i, "-", None)),
                )
            }
            Node::Binary(op, left, right) => self.binary(*op, left, right),
            Node::Like {
                operand,
                pattern,
                negated,
            } => {
                let mark = self.errors.len();
                let v = self.eval(operand);
                V::Bool(!self.failed_since(mark) && like(&to_str(v), pattern) != *negated)
            }
            Node::In {
                operand,
                set,
                negated,
            } => self.is_in(operand, set, *negated),
            Node::Call(function, args) => self.call(*function, args),
            Node::UnknownCall { name, arity } => {
                self.missing_function(name, *arity);
                V::Bool(false)
            }
        }
    }

    // Errors are raised out of line, so that their formatting does not
    // enlarge the stack frames of the recursive evaluation.

    #[cold]
    #[inline(never)]
    fn cast_failed(&mut self, s: &str, to: &str) {
        let message = format!("The string {} cannot be cast to {to}.", quote(s));
        self.fail(ErrorKind::Cast, message);
    }

    #[cold]
    #[inline(never)]
    fn missing_attribute(&mut self, name: &str) {
        let message = format!("The event has no attribute named '{name}'.");
        self.fail(ErrorKind::MissingAttribute, message);
    }

    #[cold]
    #[inline(never)]
    fn missing_function(&mut self, name: &str, arity: usize) {
        let message = format!("There is no function {name} that takes {arity} arguments.");
        self.fail(ErrorKind::MissingFunction, message);
    }

    /// Raises a _MathError_ for `a symbol b` (or `symbol a` without `b`) and gives its zero value.
    #[cold]
    #[inline(never)]
    fn overflow(&mut self, a: i32, symbol: &str, b: Option<i32>) -> i32 {
        let operation = match b {
            Some(b) => format!("{a} {symbol} {b}"),
            None => format!("{symbol}({a})"),
        };
        let message = format!("The result of {operation} does not fit in 32 bits.");
        self.fail(ErrorKind::Math, message);
        0
    }

    fn binary<'a>(&mut self, op: BinaryOp, left: &'a Node, right: &'a Node) -> V<'a> {
        let mark = self.errors.len();
        let x = self.eval(left);
        if let BinaryOp::And | BinaryOp::Or = op {
            if self.failed_since(mark) {
                return V::Bool(false);
            }
            let x = self.cast_bool(&x);
            // Short-circuit: false AND _ and true OR _ are decided by the left operand alone.
            if x == (op == BinaryOp::Or) {
                return V::Bool(x);
            }
            let mark = self.errors.len();
            let y = self.eval(right);
            return V::Bool(!self.failed_since(mark) && self.cast_bool(&y));
        }
        let y = self.eval(right);
        let arithmetic = matches!(
            op,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem
        );
        if self.failed_since(mark) {
            return if arithmetic {
                V::Int(0)
            } else {
                V::Bool(false)
            };
        }
        match op {
            BinaryOp::Xor => V::Bool(self.cast_bool(&x) ^ self.cast_bool(&y)),
            // `=` is ambiguous; the right operand's type picks the definition (section 3.7).
            BinaryOp::Eq => V::Bool(self.equals_as(&y, x)),
            BinaryOp::Ne => V::Bool(!self.equals_as(&y, x)),
            _ => {
                let (a, b) = (self.cast_int(&x), self.cast_int(&y));
                match op {
                    BinaryOp::Lt => V::Bool(a < b),
                    BinaryOp::Le => V::Bool(a <= b),
                    BinaryOp::Gt => V::Bool(a > b),
                    BinaryOp::Ge => V::Bool(a >= b),
                    _ => V::Int(self.arithmetic(op, a, b)),
                }
            }
        }
    }

    #[inline(never)]
    fn arithmetic(&mut self, op: BinaryOp, a: i32, b: i32) -> i32 {
        let (result, symbol) = match op {
            BinaryOp::Add => (a.checked_add(b), "+"),
            BinaryOp::Sub => (a.checked_sub(b), "-"),
            BinaryOp::Mul => (a.checked_mul(b), "*"),
            BinaryOp::Div | BinaryOp::Rem if b == 0 => {
                let message = format!("{a} cannot be divided by zero.");
                self.fail(ErrorKind::Math, message);
                return 0;
            }
            BinaryOp::Div => (a.checked_div(b), "/"),
            // Only i32::MIN % -1 fails to compute, and its remainder is 0.
            BinaryOp::Rem => (Some(a.checked_rem(b).unwrap_or(0)), "%"),
            _ => (Some(0), ""),
        };
        result.unwrap_or_else(|| self.overflow(a, symbol, Some(b)))
    }

    /// `IN`: the elements are cast to the type of the left operand (section 3.7).
    fn is_in<'a>(&mut self, operand: &'a Node, set: &'a [Node], negated: bool) -> V<'a> {
        let mark = self.errors.len();
        let x = self.eval(operand);
        let mut failed = self.failed_since(mark);
        let mut found = false;
        // Every element is evaluated, so that an error in any of them is reported.
        for element in set {
            let mark = self.errors.len();
            let y = self.eval(element);
            failed |= self.failed_since(mark);
            if !failed && !found {
                found = self.equals_as(&x, y);
            }
        }
        V::Bool(!failed && found != negated)
    }

    fn call<'a>(&mut self, function: Function, args: &'a [Node]) -> V<'a> {
        let mark = self.errors.len();
        let zero = match function {
            Function::Length | Function::Abs | Function::Int => V::Int(0),
            Function::Bool => V::Bool(false),
            _ => V::EMPTY,
        };
        match (function, args) {
            (Function::Concat, _) => {
                let mut out = String::new();
                for arg in args {
                    let v = self.eval(arg);
                    out.push_str(&to_str(v));
                }
                if self.failed_since(mark) {
                    return zero;
                }
                V::Str(Cow::Owned(out))
            }
            (Function::ConcatWs, [delimiter, parts @ ..]) => {
                let delimiter = self.eval(delimiter);
                let delimiter = to_str(delimiter);
                let mut out = String::new();
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&delimiter);
                    }
                    let v = self.eval(part);
                    out.push_str(&to_str(v));
                }
                if self.failed_since(mark) {
                    return zero;
                }
                V::Str(Cow::Owned(out))
            }
            (_, [x]) => {
                let v = self.eval(x);
                if self.failed_since(mark) {
                    return zero;
                }
                self.unary_function(function, v)
            }
            (_, [x, y]) => {
                let (s, n) = (self.eval(x), self.eval(y));
                if self.failed_since(mark) {
                    return zero;
                }
                let (s, n) = (to_str(s), self.cast_int(&n));
                V::Str(match function {
                    Function::Left => self.left_right(s, n, true),
                    Function::Right => self.left_right(s, n, false),
                    _ => self.substring(s, n, None),
                })
            }
            (_, [x, y, z]) => {
                let (s, p, l) = (self.eval(x), self.eval(y), self.eval(z));
                if self.failed_since(mark) {
                    return zero;
                }
                let s = to_str(s);
                let (p, l) = (self.cast_int(&p), self.cast_int(&l));
                V::Str(self.substring(s, p, Some(l)))
            }
            // Function::resolve only pairs functions with the arities above.
            _ => zero,
        }
    }

    #[inline(never)]
    fn unary_function<'a>(&mut self, function: Function, v: V<'a>) -> V<'a> {
        match function {
            Function::Length => {
                V::Int(i32::try_from(to_str(v).chars().count()).unwrap_or(i32::MAX))
            }
            Function::Lower => V::Str(Cow::Owned(to_str(v).to_lowercase())),
            Function::Upper => V::Str(Cow::Owned(to_str(v).to_uppercase())),
            Function::Trim => {
                // str::trim removes exactly the Unicode White_Space characters.
                let s = to_str(v);
                let start = s.len() - s.trim_start().len();
                let end = s.trim_end().len().max(start);
                V::Str(slice(s, start..end))
            }
            Function::Abs => {
                let i = self.cast_int(&v);
                V::Int(i.checked_abs().unwrap_or_else(|| {
                    let message = format!("The absolute value of {i} does not fit in 32 bits.");
                    self.fail(ErrorKind::Math, message);
                    i32::MAX
                }))
            }
            Function::Int => V::Int(self.cast_int(&v)),
            Function::Bool => V::Bool(self.cast_bool(&v)),
            _ => V::Str(to_str(v)),
        }
    }

    /// `LEFT` (from the start) or `RIGHT` (from the end).
    #[inline(never)]
    fn left_right<'a>(&mut self, s: Cow<'a, str>, n: i32, left: bool) -> Cow<'a, str> {
        let Ok(n) = usize::try_from(n) else {
            let name = if left { "LEFT" } else { "RIGHT" };
            let message =
                format!("{name} cannot take {n} characters; the count must not be negative.");
            self.fail(ErrorKind::FunctionEvaluation, message);
            return s;
        };
        if left {
            let end = byte_at(&s, n);
            slice(s, 0..end)
        } else {
            let skip = s.chars().count().saturating_sub(n);
            let start = byte_at(&s, skip);
            let end = s.len();
            slice(s, start..end)
        }
    }

    /// `SUBSTRING` from the 1-based position `pos` (counted from the end when negative), of at most `len` characters.
    #[inline(never)]
    fn substring<'a>(&mut self, s: Cow<'a, str>, pos: i32, len: Option<i32>) -> Cow<'a, str> {
        let n = char_count(&s);
        let p = i64::from(pos);
        if p > n || p < -n {
            let message =
                format!("SUBSTRING cannot start at position {pos} of a string of {n} characters.");
            self.fail(ErrorKind::FunctionEvaluation, message);
            return Cow::Borrowed("");
        }
        if let Some(l) = len
            && l < 0
        {
            let message =
                format!("SUBSTRING cannot take {l} characters; the length must not be negative.");
            self.fail(ErrorKind::FunctionEvaluation, message);
            return Cow::Borrowed("");
        }
        if p == 0 {
            return Cow::Borrowed("");
        }
        let first = if p > 0 { p - 1 } else { n + p };
        let last = len.map_or(n, |l| first.saturating_add(i64::from(l)).min(n));
        let start = byte_at(&s, usize::try_from(first).unwrap_or(0));
        let end = byte_at(&s, usize::try_from(last).unwrap_or(0));
        slice(s, start..end.max(start))
    }
}
