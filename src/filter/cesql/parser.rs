//! Builds an expression tree from tokens, with the precedence of section 3.6.
//!
//! From loosest to tightest: `AND`/`OR`/`XOR` (one level, as the
//! specification lists them together), comparisons, `+ -`, `* / %`, the
//! postfix `LIKE` and `IN`, the prefix `NOT`, `-` and `EXISTS`, and finally
//! function calls, parentheses, attributes and literals. Binary operators of
//! equal precedence group left to right.

use super::ParseError;
use super::Value;
use super::lexer::{Tok, Token, describe, parse_integer, tokenize};

/// How deeply parentheses, calls, sets and prefix operators may nest; it
/// bounds the parser's recursion.
pub(super) const MAX_NESTING: usize = 64;

/// How tall the tree may grow; it bounds the evaluator's recursion and the
/// recursion of dropping and cloning the tree, which long chains of binary
/// operators would otherwise make unbounded.
pub(super) const MAX_HEIGHT: usize = 256;

/// A node of the expression tree.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Literal(Value),
    /// An attribute, by its lower-case name.
    Attribute(Box<str>),
    /// `EXISTS`, with the attribute's lower-case name.
    Exists(Box<str>),
    Not(Box<Node>),
    Negate(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    Like {
        operand: Box<Node>,
        pattern: Box<[Piece]>,
        negated: bool,
    },
    In {
        operand: Box<Node>,
        set: Box<[Node]>,
        negated: bool,
    },
    Call(Function, Box<[Node]>),
    /// A call no built-in function takes; it fails only when evaluated, as
    /// a _MissingFunctionError_.
    UnknownCall {
        name: Box<str>,
        arity: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinaryOp {
    And,
    Or,
    Xor,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The built-in functions, one per name and arity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    Substring,
    SubstringLen,
    Abs,
    Int,
    Bool,
    String,
}

impl Function {
    fn resolve(upper_name: &str, arity: usize) -> Option<Function> {
        Some(match (upper_name, arity) {
            ("LENGTH", 1) => Function::Length,
            ("CONCAT", _) => Function::Concat,
            ("CONCAT_WS", 1..) => Function::ConcatWs,
            ("LOWER", 1) => Function::Lower,
            ("UPPER", 1) => Function::Upper,
            ("TRIM", 1) => Function::Trim,
            ("LEFT", 2) => Function::Left,
            ("RIGHT", 2) => Function::Right,
            ("SUBSTRING", 2) => Function::Substring,
            ("SUBSTRING", 3) => Function::SubstringLen,
            ("ABS", 1) => Function::Abs,
            ("INT", 1) => Function::Int,
            ("BOOL", 1) => Function::Bool,
            ("STRING", 1) => Function::String,
            _ => return None,
        })
    }
}

/// One element of a compiled `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// `%`: any run of characters, possibly empty.
    Any,
    /// `_`: exactly one character.
    One,
    Char(char),
}

/// Compiles a pattern; `\%` and `\_` stand for themselves, and any other
/// backslash is an ordinary character (section 3.4.3 only escapes those two).
fn compile_pattern(pattern: &str) -> Box<[Piece]> {
    let mut pieces = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '\\' => match chars.peek() {
                Some(&n @ ('%' | '_')) => {
                    chars.next();
                    Piece::Char(n)
                }
                _ => Piece::Char('\\'),
            },
            '%' => Piece::Any,
            '_' => Piece::One,
            c => Piece::Char(c),
        };
        // Adjacent `%`s mean the same as one, and keep matching linear in them.
        if !(piece == Piece::Any && pieces.last() == Some(&Piece::Any)) {
            pieces.push(piece);
        }
    }
    pieces.into_boxed_slice()
}

/// A node and the height of its tree.
type Parsed = Result<(Node, usize), ParseError>;

/// Parses a whole expression.
pub(super) fn parse(text: &str) -> Result<Node, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
        nesting: 0,
    };
    let (node, _) = parser.expression()?;
    if parser.peek().is_some() {
        return Err(parser.expected("an operator or the end of the expression"));
    }
    Ok(node)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token<'t>>,
    pos: usize,
    nesting: usize,
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: [&str; 9] = [
        "AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE",
    ];
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Attribute names are ASCII letters and digits (section 2.2, with upper
/// case allowed as the conformance suite's `EXISTS SOURCE` requires).
fn is_attribute_name(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Function names are letters and underscores, starting with a letter (section 2.4).
fn is_function_name(word: &str) -> bool {
    word.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

impl<'t> Parser<'t> {
    // Error paths are kept out of the recursive functions, so that their
    // formatting does not enlarge every stack frame of a deep expression.

    /// An error at `offset` whose message is `parts` joined.
    #[cold]
    #[inline(never)]
    fn fail(&self, offset: usize, parts: &[&str]) -> ParseError {
        ParseError::new(self.text, offset, parts.concat())
    }

    /// An error at the next token: "Expected `what`, but found …".
    #[cold]
    #[inline(never)]
    fn expected(&self, what: &str) -> ParseError {
        let found = match self.peek() {
            Some(tok) => describe(tok),
            None => "the end of the text".to_owned(),
        };
        self.fail(
            self.offset(),
            &["Expected ", what, ", but found ", &found, "."],
        )
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self, offset: usize) -> ParseError {
        let message = format!("The expression nests more than {MAX_NESTING} levels deep.");
        ParseError::new(self.text, offset, message)
    }

    #[cold]
    #[inline(never)]
    fn too_tall(&self, offset: usize) -> ParseError {
        let message = format!("The expression is more than {MAX_HEIGHT} operations deep.");
        ParseError::new(self.text, offset, message)
    }

    fn peek(&self) -> Option<&Tok<'t>> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    /// Where the next token starts, or the end of the text.
    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |t| t.start)
    }

    fn keyword_at(&self, ahead: usize, keyword: &str) -> bool {
        matches!(
            self.tokens.get(self.pos + ahead).map(|t| &t.tok),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(keyword)
        )
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.keyword_at(0, keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, tok: &Tok<'_>, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Goes one nesting level deeper; [`Parser::leave`] comes back.
    fn enter(&mut self) -> Result<(), ParseError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.too_deep(self.offset()));
        }
        self.nesting += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    /// Checks the height of a node whose tallest child is `child_height` tall.
    fn height(&self, child_height: usize, offset: usize) -> Result<usize, ParseError> {
        let height = child_height + 1;
        if height > MAX_HEIGHT {
            return Err(self.too_tall(offset));
        }
        Ok(height)
    }

    #[inline(always)]
    fn expression(&mut self) -> Parsed {
        self.enter()?;
        let result = self.binary(0);
        self.leave();
        result
    }

    /// Parses binary operators of precedence `min_level` (0 is loosest) and
    /// tighter, by precedence climbing: equal levels loop, so they group left
    /// to right, and only a tighter operator on the right recurses.
    fn binary(&mut self, min_level: u8) -> Parsed {
        let (mut left, mut height) = self.postfix()?;
        while let Some((op, level)) = self.peek().and_then(binary_op) {
            if level < min_level {
                break;
            }
            let at = self.offset();
            self.pos += 1;
            let (right, right_height) = self.binary(level + 1)?;
            height = self.height(height.max(right_height), at)?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
        Ok((left, height))
    }

    /// Parses `LIKE`, `IN` and their `NOT` forms, which apply left to right.
    fn postfix(&mut self) -> Parsed {
        let (mut operand, mut height) = self.unary()?;
        loop {
            let at = self.offset();
            let negated = self.keyword_at(0, "NOT")
                && (self.keyword_at(1, "LIKE") || self.keyword_at(1, "IN"));
            if negated {
                self.pos += 1;
            }
            if self.eat_keyword("LIKE") {
                let Some(Tok::Str(pattern)) = self.peek() else {
                    return Err(self.expected("a string literal as the pattern after LIKE"));
                };
                let pattern = compile_pattern(pattern);
                self.pos += 1;
                height = self.height(height, at)?;
                operand = Node::Like {
                    operand: Box::new(operand),
                    pattern,
                    negated,
                };
            } else if self.eat_keyword("IN") {
                self.expect(&Tok::LParen, "'(' to open the set after IN")?;
                if self.peek() == Some(&Tok::RParen) {
                    let at = self.offset();
                    return Err(self.fail(at, &["The set after IN needs at least one element."]));
                }
                self.enter()?;
                let set = self.list();
                self.leave();
                let (set, set_height) = set?;
                self.expect(&Tok::RParen, "',' or ')' in the set after IN")?;
                height = self.height(height.max(set_height), at)?;
                operand = Node::In {
                    operand: Box::new(operand),
                    set: set.into_boxed_slice(),
                    negated,
                };
            } else {
                return Ok((operand, height));
            }
        }
    }

    /// Parses comma-separated expressions up to (not including) a `)`.
    fn list(&mut self) -> Result<(Vec<Node>, usize), ParseError> {
        let mut nodes = Vec::new();
        let mut height = 0;
        if self.peek() == Some(&Tok::RParen) {
            return Ok((nodes, height));
        }
        loop {
            let (node, node_height) = self.binary(0)?;
            nodes.push(node);
            height = height.max(node_height);
            if self.peek() != Some(&Tok::Comma) {
                return Ok((nodes, height));
            }
            self.pos += 1;
        }
    }

    /// Parses the prefix operators `NOT` and `-` in a loop rather than by
    /// recursion, then their operand; each still counts as a nesting level.
    fn unary(&mut self) -> Parsed {
        let mut prefixes: Vec<(bool, usize)> = Vec::new();
        loop {
            let at = self.offset();
            let not = match self.peek() {
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NOT") => true,
                Some(Tok::Minus) if !self.signed_literal_follows() => false,
                _ => break,
            };
            if self.nesting + prefixes.len() >= MAX_NESTING {
                return Err(self.too_deep(at));
            }
            prefixes.push((not, at));
            self.pos += 1;
        }
        let (mut node, mut height) = self.operand()?;
        for (not, at) in prefixes.into_iter().rev() {
            height = self.height(height, at)?;
            node = if not {
                Node::Not(Box::new(node))
            } else {
                Node::Negate(Box::new(node))
            };
        }
        Ok((node, height))
    }

    /// Whether the next token is a sign written right against digits, which
    /// makes it part of an integer literal (section 2.2); that is how
    /// -2147483648 can be written.
    fn signed_literal_follows(&self) -> bool {
        let (Some(sign), Some(next)) = (self.tokens.get(self.pos), self.tokens.get(self.pos + 1))
        else {
            return false;
        };
        matches!(sign.tok, Tok::Minus | Tok::Plus)
            && next.start == sign.end
            && matches!(next.tok, Tok::Word(w) if w.bytes().all(|b| b.is_ascii_digit()))
    }

    #[inline(always)]
    fn operand(&mut self) -> Parsed {
        let at = self.offset();
        if self.signed_literal_follows() {
            let (Some(sign), Some(digits)) =
                (self.tokens.get(self.pos), self.tokens.get(self.pos + 1))
            else {
                return Err(self.expected("an integer"));
            };
            let literal = self.text.get(sign.start..digits.end).unwrap_or_default();
            self.pos += 2;
            return self.integer(literal, at);
        }
        match self.peek() {
            Some(Tok::Plus) => Err(self.fail(
                at,
                &["'+' is only allowed as the sign of an integer literal, right before its digits."],
            )),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("EXISTS") => {
                self.pos += 1;
                self.exists()
            }
            _ => self.primary(),
        }
    }

    fn exists(&mut self) -> Parsed {
        match self.peek() {
            Some(Tok::Word(name))
                if is_attribute_name(name)
                    && !is_keyword(name)
                    && !name.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let name = name.to_ascii_lowercase().into_boxed_str();
                self.pos += 1;
                Ok((Node::Exists(name), 1))
            }
            _ => Err(self.expected("an attribute name after EXISTS")),
        }
    }

    fn integer(&self, literal: &str, at: usize) -> Parsed {
        match parse_integer(literal) {
            Some(i) => Ok((Node::Literal(Value::Integer(i)), 1)),
            None => Err(self.fail(at, &["The integer ", literal, " does not fit in 32 bits."])),
        }
    }

    fn primary(&mut self) -> Parsed {
        let at = self.offset();
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.expression()?;
                self.expect(&Tok::RParen, "')' to close the parenthesis")?;
                Ok(inner)
            }
            Some(Tok::Str(s)) => {
                let node = Node::Literal(Value::String(s.clone()));
                self.pos += 1;
                Ok((node, 1))
            }
            Some(Tok::Word(w)) => {
                let w = *w;
                self.pos += 1;
                self.word(w, at)
            }
            _ => Err(self.expected("an expression")),
        }
    }

    /// Interprets a word in operand position.
    fn word(&mut self, w: &str, at: usize) -> Parsed {
        if w.bytes().all(|b| b.is_ascii_digit()) {
            return self.integer(w, at);
        }
        if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") {
            let b = w.eq_ignore_ascii_case("TRUE");
            return Ok((Node::Literal(Value::Boolean(b)), 1));
        }
        if is_keyword(w) {
            return Err(self.fail(
                at,
                &["Expected an expression, but found the keyword '", w, "'."],
            ));
        }
        if self.peek() == Some(&Tok::LParen) && is_function_name(w) {
            self.pos += 1;
            self.enter()?;
            let args = self.list();
            self.leave();
            let (args, height) = args?;
            self.expect(&Tok::RParen, "',' or ')' in the arguments")?;
            let height = self.height(height, at)?;
            let name = w.to_ascii_uppercase();
            let node = match Function::resolve(&name, args.len()) {
                Some(f) => Node::Call(f, args.into_boxed_slice()),
                None => Node::UnknownCall {
                    name: name.into_boxed_str(),
                    arity: args.len(),
                },
            };
            return Ok((node, height));
        }
        if is_attribute_name(w) {
            let name = w.to_ascii_lowercase().into_boxed_str();
            return Ok((Node::Attribute(name), 1));
        }
        Err(if is_function_name(w) {
            self.fail(
                at,
                &["The function name '", w, "' must be followed by '('."],
            )
        } else {
            self.fail(
                at,
                &[
                    "'",
                    w,
                    "' is neither an attribute name nor a function name.",
                ],
            )
        })
    }
}

/// The binary operator `tok` stands for, and its precedence level (0 is loosest).
fn binary_op(tok: &Tok<'_>) -> Option<(BinaryOp, u8)> {
    let op = match tok {
        Tok::Word(w) if w.eq_ignore_ascii_case("AND") => (BinaryOp::And, 0),
        Tok::Word(w) if w.eq_ignore_ascii_case("OR") => (BinaryOp::Or, 0),
        Tok::Word(w) if w.eq_ignore_ascii_case("XOR") => (BinaryOp::Xor, 0),
        Tok::Eq => (BinaryOp::Eq, 1),
        Tok::Ne => (BinaryOp::Ne, 1),
        Tok::Lt => (BinaryOp::Lt, 1),
        Tok::Le => (BinaryOp::Le, 1),
        Tok::Gt => (BinaryOp::Gt, 1),
        Tok::Ge => (BinaryOp::Ge, 1),
        Tok::Plus => (BinaryOp::Add, 2),
        Tok::Minus => (BinaryOp::Sub, 2),
        Tok::Star => (BinaryOp::Mul, 3),
        Tok::Slash => (BinaryOp::Div, 3),
        Tok::Percent => (BinaryOp::Rem, 3),
        _ => return None,
    };
    Some(op)
}
