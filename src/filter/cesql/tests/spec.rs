//! The examples and rules of the CESQL v1.0.0 specification text
//! (`cesql/spec.md`), section by section.

use super::super::ErrorKind::{self, *};
use super::super::{EvalError, Expression, ParseError, Value};
use super::{TestEvent, eval, eval_on};

fn b(v: bool) -> Value {
    Value::Boolean(v)
}

fn i(v: i32) -> Value {
    Value::Integer(v)
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// Asserts that `text` evaluates to `want` with errors of exactly `kinds`, in order.
#[track_caller]
fn check(text: &str, want: Value, kinds: &[ErrorKind]) {
    assert_eq!(eval(text), (want, kinds.to_vec()), "{text}");
}

#[track_caller]
fn check_on(text: &str, event: &TestEvent, want: Value, kinds: &[ErrorKind]) {
    assert_eq!(eval_on(text, event), (want, kinds.to_vec()), "{text}");
}

#[track_caller]
fn parse_error(text: &str) -> ParseError {
    match Expression::parse(text) {
        Ok(e) => panic!("{text:?} should not parse, but gave {e:?}"),
        Err(e) => e,
    }
}

fn event(attributes: &[(&str, Value)]) -> TestEvent {
    attributes
        .iter()
        .fold(TestEvent::full(), |e, (n, v)| e.with(n, v.clone()))
}

// Section 2: keywords are case-insensitive.

#[test]
fn keywords_are_case_insensitive() {
    let e = event(&[("hop", s("5")), ("ttl", s("10"))]);
    check_on("int(hop) < int(ttl) and int(hop) < 1000", &e, b(true), &[]);
    check_on("INT(hop) < INT(ttl) AND INT(hop) < 1000", &e, b(true), &[]);
    check("nOt FaLsE", b(true), &[]);
    check("TRUE aNd TrUe", b(true), &[]);
    check("FALSE oR TRUE", b(true), &[]);
    check("TRUE xOr TRUE", b(false), &[]);
    check("'abc' lIkE 'A%'", b(false), &[]);
    check("'abc' NoT lIkE 'a%'", b(false), &[]);
    check("1 iN (1)", b(true), &[]);
    check("1 nOt In (1)", b(false), &[]);
    check("eXiStS id", b(true), &[]);
    check("lEnGtH('abc')", i(3), &[]);
    check("concat_ws('-', 'a', 'b')", s("a-b"), &[]);
}

// Section 2.1: nested expressions must be parenthesized correctly.

#[test]
fn parentheses_must_balance() {
    check("((1 + 2) * (3))", i(9), &[]);
    parse_error("(1 + 2");
    parse_error("1 + 2)");
    parse_error("()");
    parse_error("");
    parse_error("   ");
}

// Section 2.2: value identifiers and literals.

#[test]
fn identifiers_read_lower_case_attributes() {
    let e = event(&[("myext1", s("v")), ("1ext", s("w"))]);
    check_on("myext1", &e, s("v"), &[]);
    check_on("MyExt1", &e, s("v"), &[]);
    check_on("1ext", &e, s("w"), &[]);
    check_on("EXISTS MYEXT1", &e, b(true), &[]);
    // Long names are discouraged (SHOULD NOT), not forbidden.
    check_on(
        "abcdefghijklmnopqrstuvwxyz",
        &e,
        b(false),
        &[MissingAttribute],
    );
    parse_error("my_ext");
    parse_error("myext.sub");
    parse_error("é");
}

#[test]
fn integer_literals_are_32_bit() {
    check("0", i(0), &[]);
    check("007", i(7), &[]);
    check("2147483647", i(i32::MAX), &[]);
    check("-2147483648", i(i32::MIN), &[]);
    check("+42", i(42), &[]);
    check("-42", i(-42), &[]);
    parse_error("2147483648");
    parse_error("-2147483649");
    parse_error("99999999999999999999999999999999");
    parse_error("- 2147483648");
    assert_eq!(parse_error("1 + 2147483648").column, 5);
    // A sign is part of a literal only when written before digits; `+` is not an operator otherwise.
    parse_error("+ 1");
    parse_error("+'1'");
    check("3 -1", i(2), &[]);
    check("3 - -1", i(4), &[]);
    check("3+-1", i(2), &[]);
}

#[test]
fn boolean_literals_are_case_insensitive() {
    check("true", b(true), &[]);
    check("TRUE", b(true), &[]);
    check("False", b(false), &[]);
}

#[test]
fn string_literals_and_their_escapes() {
    check("'abc'", s("abc"), &[]);
    check("\"abc\"", s("abc"), &[]);
    check("''", s(""), &[]);
    check("'it\\'s'", s("it's"), &[]);
    check("\"say \\\"hi\\\"\"", s("say \"hi\""), &[]);
    check("'a\"b'", s("a\"b"), &[]);
    check("\"a'b\"", s("a'b"), &[]);
    // Only the literal's own quote is escaped; other backslashes stay as written.
    check("'a\\\"b'", s("a\\\"b"), &[]);
    check("'a\\%b'", s("a\\%b"), &[]);
    check("'a\\\\'", s("a\\\\"), &[]);
    check("'ünï ☃'", s("ünï ☃"), &[]);
    check("'line\nbreak'", s("line\nbreak"), &[]);
    // Two adjacent literals are not one string with a doubled quote.
    parse_error("'a''b'");
    let e = parse_error("1 = 'abc");
    assert_eq!((e.offset, e.column), (4, 5));
    parse_error("'abc\\'");
    parse_error("\"abc");
}

// Section 2.3: operators.

#[test]
fn like_needs_a_string_literal_pattern() {
    let e = event(&[("x", s("123")), ("p", s("1%"))]);
    check_on("x LIKE '1%'", &e, b(true), &[]);
    for text in [
        "x LIKE 123",
        "x LIKE p",
        "x LIKE ('1%')",
        "x LIKE CONCAT('1', '%')",
        "x LIKE",
        "x NOT",
        "x NOT 'a'",
    ] {
        parse_error(text);
    }
}

#[test]
fn exists_needs_an_identifier() {
    check("EXISTS id", b(true), &[]);
    for text in [
        "EXISTS",
        "EXISTS 'id'",
        "EXISTS (id)",
        "EXISTS 1",
        "EXISTS AND",
        "EXISTS LENGTH(id)",
    ] {
        parse_error(text);
    }
}

#[test]
fn in_needs_a_non_empty_parenthesized_set() {
    check("1 IN (1)", b(true), &[]);
    check("1 IN (3, 2, 1)", b(true), &[]);
    for text in [
        "1 IN ()",
        "1 IN 1",
        "1 IN (1,)",
        "1 IN (1",
        "1 IN",
        "1 NOT IN ()",
    ] {
        parse_error(text);
    }
}

#[test]
fn every_comparison_operator_parses() {
    check("1 = 1", b(true), &[]);
    check("1 != 1", b(false), &[]);
    check("1 <> 1", b(false), &[]);
    check("1 >= 1", b(true), &[]);
    check("1 <= 1", b(true), &[]);
    check("1 < 1", b(false), &[]);
    check("1 > 1", b(false), &[]);
    for text in [
        "1 ! 1", "1 == 1", "1 =< 1", "1 => 1", "1 >< 1", "1 = = 1", "1 =",
    ] {
        parse_error(text);
    }
}

// Section 2.4: function invocations.

#[test]
fn function_names_are_letters_and_underscores() {
    check("CONCAT()", s(""), &[]);
    check("CONCAT ('a')", s("a"), &[]);
    check("NO_SUCH_FUNCTION(1)", b(false), &[MissingFunction]);
    check("nosuchfunction()", b(false), &[MissingFunction]);
    parse_error("ABC1(2)");
    parse_error("_ABC(2)");
    parse_error("CONCAT_WS");
    parse_error("LENGTH('a'");
    parse_error("LENGTH('a',)");
    parse_error("LENGTH(,)");
}

// Section 3.1: the type system.

#[test]
fn zero_values_by_type() {
    check("missing", b(false), &[MissingAttribute]);
    check("missing + 1", i(0), &[MissingAttribute]);
    check("CONCAT(missing)", s(""), &[MissingAttribute]);
}

// Section 3.2: context identifiers and missing attributes.

#[test]
fn missing_attributes_give_the_zero_value_of_the_subexpression() {
    check(
        "true AND (missingAttribute = \"\")",
        b(false),
        &[MissingAttribute],
    );
    check("missingattribute * 5", i(0), &[MissingAttribute]);
    // Not a MathError: the division is never performed.
    check("1 / missingAttribute", i(0), &[MissingAttribute]);
    // A bare attribute's type is unknown, so it is taken as a Boolean.
    check("missingAttribute", b(false), &[MissingAttribute]);
    check("NOT missing", b(false), &[MissingAttribute]);
    check("missing NOT LIKE 'a'", b(false), &[MissingAttribute]);
    check("missing NOT IN (1)", b(false), &[MissingAttribute]);
    check("1 NOT IN (missing)", b(false), &[MissingAttribute]);
    check("LENGTH(missing)", i(0), &[MissingAttribute]);
    check("STRING(missing)", s(""), &[MissingAttribute]);
    check("BOOL(missing)", b(false), &[MissingAttribute]);
    check("-missing", i(0), &[MissingAttribute]);
    check("EXISTS missing", b(false), &[]);
}

#[test]
fn attributes_keep_their_types() {
    let e = event(&[("myint", i(10)), ("mybool", b(true)), ("mystr", s("10"))]);
    check_on("myint + 1", &e, i(11), &[]);
    check_on("mybool AND TRUE", &e, b(true), &[]);
    check_on("myint = mystr", &e, b(true), &[]);
    check_on("mystr = myint", &e, b(true), &[]);
    check_on("mybool = 'true'", &e, b(true), &[]);
    check_on("time", &e, s("2018-04-05T17:31:00Z"), &[]);
}

// Section 3.3: errors.

#[test]
fn error_kinds_have_the_tck_names() {
    let names: Vec<&str> = [
        Parse,
        Math,
        Cast,
        MissingAttribute,
        MissingFunction,
        FunctionEvaluation,
        Generic,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "parse",
            "math",
            "cast",
            "missingAttribute",
            "missingFunction",
            "functionEvaluation",
            "generic"
        ]
    );
    assert_eq!(parse_error("(").kind(), Parse);
}

#[test]
fn errors_carry_sentences() {
    let (value, errors) = Expression::parse("missing")
        .unwrap()
        .evaluate(&TestEvent::full());
    assert_eq!(value, b(false));
    let [EvalError { kind, message }] = errors.as_slice() else {
        panic!("one error expected, got {errors:?}");
    };
    assert_eq!(*kind, MissingAttribute);
    assert!(
        message.contains("'missing'") && message.ends_with('.'),
        "{message}"
    );
    assert_eq!(
        errors[0].to_string(),
        format!("missingAttribute: {message}")
    );
    let e = parse_error("1 +");
    assert!(
        e.message.starts_with(char::is_uppercase) && e.message.ends_with('.'),
        "{e}"
    );
}

// Section 3.4.1: unary operators.

#[test]
fn unary_operators() {
    check("NOT TRUE", b(false), &[]);
    check("NOT NOT TRUE", b(true), &[]);
    check("-5", i(-5), &[]);
    check("- 5", i(-5), &[]);
    check("-(5)", i(-5), &[]);
    check("--5", i(5), &[]);
    check("-'5'", i(-5), &[]);
    check("-FALSE", i(0), &[]);
    check("NOT 0", b(true), &[]);
    check("NOT 'x'", b(true), &[Cast]);
    check("-'x'", i(0), &[Cast]);
    check("-(-2147483648)", i(0), &[Math]);
    check("-(-2147483647)", i(i32::MAX), &[]);
}

// Section 3.4.2: binary operators.

#[test]
fn equality_on_each_type() {
    check("TRUE = TRUE", b(true), &[]);
    check("TRUE <> FALSE", b(true), &[]);
    check("3 = 3", b(true), &[]);
    check("3 != 3", b(false), &[]);
    check("'abc' = 'abc'", b(true), &[]);
    // String comparison is case sensitive.
    check("'abc' = 'ABC'", b(false), &[]);
    check("'abc' != 'ABC'", b(true), &[]);
}

#[test]
fn ordering_is_on_integers() {
    check("-1 < 0", b(true), &[]);
    check("'10' > '9'", b(true), &[]);
    check("TRUE > FALSE", b(true), &[]);
    check("'a' < 'b'", b(false), &[Cast, Cast]);
}

#[test]
fn arithmetic() {
    check("7 / 2", i(3), &[]);
    check("-7 / 2", i(-3), &[]);
    check("7 / -2", i(-3), &[]);
    check("7 % 3", i(1), &[]);
    check("-7 % 3", i(-1), &[]);
    check("7 % -3", i(1), &[]);
    check("5 / 0", i(0), &[Math]);
    check("5 % 0", i(0), &[Math]);
    check("2147483647 + 1", i(0), &[Math]);
    check("-2147483648 - 1", i(0), &[Math]);
    check("65536 * 65536", i(0), &[Math]);
    check("-2147483648 / -1", i(0), &[Math]);
    check("-2147483648 % -1", i(0), &[]);
    check("2147483647 + -2147483648", i(-1), &[]);
}

#[test]
fn logic() {
    check("TRUE AND FALSE", b(false), &[]);
    check("TRUE OR FALSE", b(true), &[]);
    check("TRUE XOR FALSE", b(true), &[]);
    check("1 AND 'true'", b(true), &[]);
    check("0 OR 'FALSE'", b(false), &[]);
    check("'yes' AND TRUE", b(false), &[Cast]);
    check("'yes' XOR 'no'", b(false), &[Cast, Cast]);
}

#[test]
fn and_or_short_circuit() {
    check("FALSE AND missing", b(false), &[]);
    check("TRUE OR missing", b(true), &[]);
    check("FALSE AND 1 / 0 = 0", b(false), &[]);
    check("TRUE OR NOSUCH()", b(true), &[]);
    check("TRUE AND missing", b(false), &[MissingAttribute]);
    check("FALSE OR missing", b(false), &[MissingAttribute]);
    // XOR needs both operands.
    check("FALSE XOR missing", b(false), &[MissingAttribute]);
}

// Section 3.4.3: LIKE.

#[test]
fn like_wildcards() {
    // The specification's example pattern is written `_b*`; with `%`, the
    // wildcard it describes, it accepts and rejects the values it lists.
    for (value, matches) in [
        ("ab", true),
        ("abc", true),
        ("abcd1", true),
        ("b", false),
        ("acd", false),
        ("aBc", false),
    ] {
        check(&format!("'{value}' LIKE '_b%'"), b(matches), &[]);
    }
    check("'abc%' LIKE 'abc\\%'", b(true), &[]);
    check("'abcd' LIKE 'abc\\%'", b(false), &[]);
    check("'a_c' LIKE 'a\\_c'", b(true), &[]);
    check("'abc' LIKE 'a\\_c'", b(false), &[]);
    check("'' LIKE '%'", b(true), &[]);
    check("'' LIKE '_'", b(false), &[]);
    check("'' LIKE ''", b(true), &[]);
    check("'a' LIKE ''", b(false), &[]);
    check("'aaa' LIKE '%%a%%'", b(true), &[]);
    check("'mississippi' LIKE '%iss%ppi'", b(true), &[]);
    check("'mississippi' LIKE 'm%ss_p%i'", b(true), &[]);
    check("'mississippi' LIKE 'm%ss_x%i'", b(false), &[]);
    check("'é☃x' LIKE '__x'", b(true), &[]);
    check("'a\\b' LIKE 'a\\b'", b(true), &[]);
    check("'ABC' LIKE 'abc'", b(false), &[]);
}

#[test]
fn like_casts_the_left_operand_to_string() {
    check("123 LIKE '1%'", b(true), &[]);
    check("-5 LIKE '-_'", b(true), &[]);
    check("TRUE LIKE 'true'", b(true), &[]);
    check("123 NOT LIKE '1%'", b(false), &[]);
}

// Section 3.4.4: EXISTS.

#[test]
fn exists_is_true_for_required_attributes() {
    let bare = TestEvent::default();
    for name in ["id", "source", "specversion", "type"] {
        check_on(&format!("EXISTS {name}"), &bare, b(true), &[]);
    }
    check_on("EXISTS subject", &bare, b(false), &[]);
    check("EXISTS subject", b(true), &[]);
}

// Section 3.4.5: IN.

#[test]
fn in_casts_elements_to_the_left_type() {
    check("'1' IN (1, 2)", b(true), &[]);
    check("1 IN ('1', '2')", b(true), &[]);
    check("1 IN ('x', 1)", b(true), &[Cast]);
    check("TRUE IN ('true')", b(true), &[]);
    check("'true' IN (TRUE)", b(true), &[]);
    check("'TRUE' IN (TRUE)", b(false), &[]);
    check("3 NOT IN (1, 2)", b(true), &[]);
    check("3 IN (1, 1 / 0)", b(false), &[Math]);
    check("1 + 2 IN (3)", i(1), &[]);
}

// Section 3.5: functions and their dispatch.

#[test]
fn functions_dispatch_on_name_and_arity() {
    check("SUBSTRING('abc', 2)", s("bc"), &[]);
    check("SUBSTRING('abc', 2, 1)", s("b"), &[]);
    check("SUBSTRING('abc')", b(false), &[MissingFunction]);
    check("SUBSTRING('abc', 1, 1, 1)", b(false), &[MissingFunction]);
    check("LENGTH('a', 'b')", b(false), &[MissingFunction]);
    check("LENGTH()", b(false), &[MissingFunction]);
    check("ABS()", b(false), &[MissingFunction]);
    // A missing function is reported when evaluated, without evaluating its arguments.
    check("NOSUCH(missing, 1 / 0)", b(false), &[MissingFunction]);
    check("NOSUCH() = FALSE", b(false), &[MissingFunction]);
    // Only the functions the specification defines exist.
    check("IS_INT('1')", b(false), &[MissingFunction]);
    check("IS_BOOL('true')", b(false), &[MissingFunction]);
    check("IS_STRING('a')", b(false), &[MissingFunction]);
}

#[test]
fn function_arguments_are_cast() {
    check("LENGTH(12345)", i(5), &[]);
    check("LEFT(12345, '2')", s("12"), &[]);
    check("LEFT('abc', 'x')", s(""), &[Cast]);
    check("ABS('-3')", i(3), &[]);
    check("ABS(TRUE)", i(1), &[]);
    check("CONCAT(1, TRUE, 'x')", s("1truex"), &[]);
    check("CONCAT_WS(0, 1, 2)", s("102"), &[]);
}

// Section 3.5.1: string functions.

#[test]
fn length_counts_characters() {
    check("LENGTH('héllo')", i(5), &[]);
    check("LENGTH('☃☃')", i(2), &[]);
    check("LENGTH('')", i(0), &[]);
}

#[test]
fn concat_functions() {
    check("CONCAT('a', 'b', 'c')", s("abc"), &[]);
    check("CONCAT_WS(', ', 'a', 'b', 'c')", s("a, b, c"), &[]);
    check("CONCAT_WS(', ', 'a')", s("a"), &[]);
    check("CONCAT_WS(', ')", s(""), &[]);
    check("CONCAT_WS('', 'a', 'b')", s("ab"), &[]);
}

#[test]
fn case_functions_are_unicode() {
    check("LOWER('ÀÉÎ ABC')", s("àéî abc"), &[]);
    check("UPPER('straße')", s("STRASSE"), &[]);
}

#[test]
fn trim_removes_unicode_white_space_only() {
    check("TRIM('\u{3000}\u{2003} a \t\n')", s("a"), &[]);
    check("TRIM('\u{1}a\u{7f}')", s("\u{1}a\u{7f}"), &[]);
    check("TRIM('   ')", s(""), &[]);
}

#[test]
fn left_and_right() {
    check("LEFT('héllo', 2)", s("hé"), &[]);
    check("RIGHT('héllo', 4)", s("éllo"), &[]);
    check("LEFT('abc', 0)", s(""), &[]);
    check("RIGHT('abc', 0)", s(""), &[]);
    check("LEFT('abc', 3)", s("abc"), &[]);
    check("RIGHT('abc', 2147483647)", s("abc"), &[]);
    check("LEFT('abc', -1)", s("abc"), &[FunctionEvaluation]);
    check("RIGHT('abc', -2147483648)", s("abc"), &[FunctionEvaluation]);
}

#[test]
fn substring() {
    check("SUBSTRING('Quadratically', 5)", s("ratically"), &[]);
    check("SUBSTRING('Sakila', -3)", s("ila"), &[]);
    check("SUBSTRING('Sakila', -5, 3)", s("aki"), &[]);
    check("SUBSTRING('abc', 3)", s("c"), &[]);
    check("SUBSTRING('abc', -3)", s("abc"), &[]);
    check("SUBSTRING('abc', 0)", s(""), &[]);
    check("SUBSTRING('', 0)", s(""), &[]);
    check("SUBSTRING('abc', 4)", s(""), &[FunctionEvaluation]);
    check("SUBSTRING('abc', -4)", s(""), &[FunctionEvaluation]);
    check("SUBSTRING('', 1)", s(""), &[FunctionEvaluation]);
    // A length beyond the end takes what there is.
    check("SUBSTRING('abcdef', 3, 100)", s("cdef"), &[]);
    check("SUBSTRING('abcdef', 3, 2147483647)", s("cdef"), &[]);
    check("SUBSTRING('abcdef', 3, 0)", s(""), &[]);
    check("SUBSTRING('abcdef', 3, -1)", s(""), &[FunctionEvaluation]);
    check("SUBSTRING('abcdef', 0, -1)", s(""), &[FunctionEvaluation]);
    check(
        "SUBSTRING('abcdef', -2147483648, 1)",
        s(""),
        &[FunctionEvaluation],
    );
    check("SUBSTRING('héllo', 2, 3)", s("éll"), &[]);
}

// Section 3.5.2: math functions.

#[test]
fn abs() {
    check("ABS(-7)", i(7), &[]);
    check("ABS(7)", i(7), &[]);
    check("ABS(-2147483647)", i(i32::MAX), &[]);
    check("ABS(-2147483648)", i(i32::MAX), &[Math]);
}

// Section 3.5.3: functions return a value of their type even with errors.

#[test]
fn functions_with_errors_still_return_values() {
    check("LEFT('abc', -1) = 'abc'", b(false), &[FunctionEvaluation]);
    check("LENGTH(SUBSTRING('abc', 9))", i(0), &[FunctionEvaluation]);
    check("INT('nope')", i(0), &[Cast]);
    check("BOOL('nope')", b(false), &[Cast]);
}

// Section 3.6: precedence and associativity.

#[test]
fn precedence() {
    check("4 * 2 + 4 / 2", i(10), &[]);
    check("2 + 3 * 4", i(14), &[]);
    check("10 - 4 - 3", i(3), &[]);
    check("100 / 10 / 5", i(2), &[]);
    check("7 % 4 * 2", i(6), &[]);
    check("1 + 2 = 3", b(true), &[]);
    check("1 < 2 = TRUE", b(true), &[]);
    check("1 = 1 AND 2 = 2", b(true), &[]);
    // Unary operators bind tighter than everything but calls and parentheses.
    check("NOT TRUE = FALSE", b(true), &[]);
    check("NOT (TRUE = FALSE)", b(true), &[]);
    check("-2 * 3", i(-6), &[]);
    check("-LENGTH('ab')", i(-2), &[]);
    check("NOT 'abc' LIKE 'a%'", b(false), &[Cast]);
    // LIKE and IN bind tighter than the binary operators.
    check("'1' + '2' LIKE '2'", i(2), &[]);
    check("1 + 2 IN (2)", i(2), &[]);
    check("'ab' LIKE 'a%' IN (TRUE)", b(true), &[]);
    check("1 IN (1) LIKE 'true'", b(true), &[]);
    check("EXISTS id AND EXISTS source", b(true), &[]);
    check("NOT EXISTS id", b(false), &[]);
}

#[test]
fn logic_operators_share_a_level_and_group_left_to_right() {
    // (TRUE OR FALSE) AND FALSE, not TRUE OR (FALSE AND FALSE).
    check("TRUE OR FALSE AND FALSE", b(false), &[]);
    // (FALSE AND FALSE) OR TRUE.
    check("FALSE AND FALSE OR TRUE", b(true), &[]);
    // (TRUE XOR TRUE) OR TRUE.
    check("TRUE XOR TRUE OR TRUE", b(true), &[]);
    check("TRUE OR (FALSE AND FALSE)", b(true), &[]);
}

// Section 3.7: type casting.

#[test]
fn cast_table() {
    check("STRING(42)", s("42"), &[]);
    check("STRING(-42)", s("-42"), &[]);
    check("STRING(007)", s("7"), &[]);
    check("BOOL(0)", b(false), &[]);
    check("BOOL(-1)", b(true), &[]);
    check("INT('+12')", i(12), &[]);
    check("INT('-12')", i(-12), &[]);
    check("INT('0012')", i(12), &[]);
    check("INT('-2147483648')", i(i32::MIN), &[]);
    check("INT('2147483648')", i(0), &[Cast]);
    check("INT(' 1')", i(0), &[Cast]);
    check("INT('1.5')", i(0), &[Cast]);
    check("INT('')", i(0), &[Cast]);
    check("INT('+')", i(0), &[Cast]);
    check("INT('١')", i(0), &[Cast]);
    check("BOOL('TrUe')", b(true), &[]);
    check("BOOL('FALSE')", b(false), &[]);
    check("BOOL('yes')", b(false), &[Cast]);
    check("BOOL(' true')", b(false), &[Cast]);
    check("INT(TRUE)", i(1), &[]);
    check("STRING(FALSE)", s("false"), &[]);
}

#[test]
fn boolean_to_string_examples() {
    check("TRUE = \"true\" AND FALSE = \"false\"", b(true), &[]);
    check("TRUE = \"TRUE\" OR FALSE = \"FALSE\"", b(false), &[]);
}

#[test]
fn equality_casts_the_left_operand_to_the_right_type() {
    let e = event(&[("sequence", s("10"))]);
    check_on("sequence = 10", &e, b(true), &[]);
    check_on("10 = sequence", &e, b(true), &[]);
    check("'abc' = 1", b(false), &[Cast]);
    check("1 = 'abc'", b(false), &[]);
    check("TRUE = 1", b(true), &[]);
    check("1 = TRUE", b(true), &[]);
    check("2 = TRUE", b(true), &[]);
    check("TRUE = 2", b(false), &[]);
}

#[test]
fn implicit_casts_chain_through_operators() {
    // As the MY_STRING_PREDICATE(sequence + 10) example: to Integer for `+`,
    // then to String for a String parameter.
    let e = event(&[("sequence", s("5"))]);
    check_on("LENGTH(sequence + 10)", &e, i(2), &[]);
    check_on("CONCAT(sequence + 10)", &e, s("15"), &[]);
}

// Section 4.1: complete evaluation collects every error.

#[test]
fn complete_evaluation_reports_all_errors() {
    check("INT('a') + INT('b')", i(0), &[Cast, Cast]);
    check(
        "CONCAT(missing, other)",
        s(""),
        &[MissingAttribute, MissingAttribute],
    );
    check(
        "1 IN (missing, 1 / 0, NOSUCH())",
        b(false),
        &[MissingAttribute, Math, MissingFunction],
    );
    // An operand with an error makes its operator yield the zero value.
    check("ABS(-2147483648) + 0", i(0), &[Math]);
    check("(1 / 0) + 5", i(0), &[Math]);
    check("NOT (1 / 0 = 0)", b(false), &[Math]);
    check("TRUE AND (1 != 1 / 0)", b(false), &[Math]);
}

// Section 5: examples.

#[test]
fn examples() {
    let e = event(&[("firstname", s("Francesco")), ("lastname", s("Guardiani"))]);
    check_on("EXISTS subject", &e, b(true), &[]);
    check_on("firstname = 'Francesco'", &e, b(true), &[]);
    check_on(
        "firstname = 'Francesco' OR subject = 'Francesco'",
        &e,
        b(true),
        &[],
    );
    let text =
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'";
    check_on(text, &e, b(true), &[]);
    let e = event(&[("sequence", i(10)), ("hop", i(3)), ("ttl", s("4"))]);
    check_on("sequence = 10", &e, b(true), &[]);
    check_on("hop < ttl", &e, b(true), &[]);
}

// The crate's own API.

#[test]
fn parse_error_positions() {
    let e = parse_error("'é' = = 1");
    assert_eq!((e.offset, e.column), (7, 7));
    assert_eq!(e.to_string(), format!("column 7: {}", e.message));
    let e = parse_error("LENGTH(");
    assert_eq!((e.offset, e.column), (7, 8));
    let e = parse_error("a ~ b");
    assert_eq!((e.offset, e.column), (2, 3));
    let e = parse_error("1 2");
    assert_eq!(e.column, 3);
}

#[test]
fn values_as_json() {
    assert_eq!(b(true).to_json(), "true");
    assert_eq!(i(-42).to_json(), "-42");
    assert_eq!(s("abc").to_json(), "\"abc\"");
    assert_eq!(
        s("a\"b\\c\n\t\u{1}é").to_json(),
        "\"a\\\"b\\\\c\\n\\t\\u0001é\""
    );
}

#[test]
fn expressions_are_reusable() {
    let expression: Expression = "myint * 2".parse().unwrap();
    for n in [1, 2, 3] {
        let (value, errors) = expression.evaluate(&TestEvent::default().with("myint", i(n)));
        assert_eq!((value, errors), (i(n * 2), vec![]));
    }
}
