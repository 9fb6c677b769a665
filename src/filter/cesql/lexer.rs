//! Splits an expression's text into tokens.

use super::ParseError;

/// A token's kind and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok<'t> {
    /// A run of ASCII letters, digits and underscores: a keyword, a literal
    /// integer, an attribute or a function name; the parser tells which,
    /// because that depends on what follows.
    Word(&'t str),
    /// A string literal, with its quote escapes resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    Eq,
    /// `!=` or `<>`.
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
}

/// A token and the byte range of the text it came from.
#[derive(Debug, Clone)]
pub(super) struct Token<'t> {
    pub(super) tok: Tok<'t>,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Describes a token for error messages.
pub(super) fn describe(tok: &Tok<'_>) -> String {
    match tok {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(_) => "a string".to_owned(),
        Tok::LParen => "'('".to_owned(),
        Tok::RParen => "')'".to_owned(),
        Tok::Comma => "','".to_owned(),
        Tok::Eq => "'='".to_owned(),
        Tok::Ne => "'!='".to_owned(),
        Tok::Lt => "'<'".to_owned(),
        Tok::Le => "'<='".to_owned(),
        Tok::Gt => "'>'".to_owned(),
        Tok::Ge => "'>='".to_owned(),
        Tok::Plus => "'+'".to_owned(),
        Tok::Minus => "'-'".to_owned(),
        Tok::Star => "'*'".to_owned(),
        Tok::Slash => "'/'".to_owned(),
        Tok::Percent => "'%'".to_owned(),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tokenizes the whole text.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        let tok = match c {
            // The grammar skips exactly these; other white space is an error.
            ' ' | '\t' | '\r' | '\n' => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '=' => Tok::Eq,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Star,
            '/' => Tok::Slash,
            '%' => Tok::Percent,
            '!' | '<' | '>' => {
                let next = chars.peek().map(|&(_, n)| n);
                let (tok, two) = match (c, next) {
                    ('!', Some('=')) | ('<', Some('>')) => (Tok::Ne, true),
                    ('<', Some('=')) => (Tok::Le, true),
                    ('>', Some('=')) => (Tok::Ge, true),
                    ('<', _) => (Tok::Lt, false),
                    ('>', _) => (Tok::Gt, false),
                    _ => {
                        let message = "'!' must be followed by '=' to form the operator '!='.";
                        return Err(ParseError::new(text, start, message.to_owned()));
                    }
                };
                if two {
                    chars.next();
                    end += 1;
                }
                tok
            }
            '\'' | '"' => {
                let (value, close) = string_literal(text, start, c, &mut chars)?;
                end = close;
                Tok::Str(value)
            }
            c if is_word_char(c) => {
                while let Some(&(i, n)) = chars.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                Tok::Word(text.get(start..end).unwrap_or_default())
            }
            c => {
                let message = format!("The character {c:?} cannot appear here.");
                return Err(ParseError::new(text, start, message));
            }
        };
        tokens.push(Token { tok, start, end });
    }
    Ok(tokens)
}

/// Reads a string literal whose opening `quote` is at `start`; returns its
/// value and the byte offset just past its closing quote.
///
/// Only a backslash before the literal's own quote character is an escape,
/// as in the grammar of section 2.2. Other backslashes are kept with the
/// character after them, so that `LIKE` patterns still see `\%` and `\_`,
/// and so that `\\` cannot escape the closing quote.
fn string_literal(
    text: &str,
    start: usize,
    quote: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<(String, usize), ParseError> {
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((value, i + c.len_utf8()));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, n)) if n == quote => value.push(n),
                Some((_, n)) => {
                    value.push('\\');
                    value.push(n);
                }
                None => break,
            }
        } else {
            value.push(c);
        }
    }
    let message = "The string that starts here is never closed.".to_owned();
    Err(ParseError::new(text, start, message))
}

/// Interprets an optional sign and base-10 digits as a 32-bit integer; `None`
/// when the text is not such a number or the number does not fit.
pub(super) fn parse_integer(text: &str) -> Option<i32> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulating negatively reaches i32::MIN, whose magnitude has no
    // positive i32.
    let mut value: i32 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = i32::from(b - b'0');
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}
