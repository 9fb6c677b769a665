//! Property tests: nothing panics on any input, and the arithmetic agrees
//! with 32-bit checked arithmetic.

use proptest::prelude::*;

use super::super::ErrorKind::Math;
use super::super::{Expression, Value};
use super::{TestEvent, eval, eval_on};

/// An event with a few attributes of each type, for random expressions to read.
fn event() -> TestEvent {
    TestEvent::full()
        .with("x", Value::Integer(7))
        .with("y", Value::Integer(-3))
        .with("flag", Value::Boolean(true))
        .with("num", Value::String("42".to_owned()))
        .with("text", Value::String("héllo wörld".to_owned()))
}

/// Parses and, when that succeeds, evaluates twice, checking the results agree.
fn parse_and_evaluate(text: &str) {
    if let Ok(expression) = Expression::parse(text) {
        let event = event();
        let first = expression.evaluate(&event);
        assert_eq!(first, expression.clone().evaluate(&event), "{text}");
    }
}

/// Pieces of CESQL, valid and not, for random token sequences.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    ",",
    "AND",
    "or",
    "Xor",
    "NOT",
    "not",
    "LIKE",
    "IN",
    "EXISTS",
    "TRUE",
    "false",
    "0",
    "1",
    "-1",
    "2147483647",
    "-2147483648",
    "2147483648",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "!",
    "'a%'",
    "'_'",
    "\"b\\\"\"",
    "'\\''",
    "'\\%\\_'",
    "''",
    "'",
    "\"",
    "\\",
    "x",
    "y",
    "flag",
    "num",
    "text",
    "id",
    "missing",
    "MyExt",
    "LENGTH",
    "CONCAT",
    "CONCAT_WS",
    "LOWER",
    "UPPER",
    "TRIM",
    "LEFT",
    "RIGHT",
    "SUBSTRING",
    "ABS",
    "INT",
    "BOOL",
    "STRING",
    "NOSUCH",
    "a_b",
    "1a",
    "é",
    "\u{0}",
    "\t",
    "\n",
];

fn token_soup() -> impl Strategy<Value = String> {
    let piece = (prop::sample::select(FRAGMENTS), prop::bool::ANY);
    prop::collection::vec(piece, 0..40).prop_map(|pieces| {
        pieces
            .into_iter()
            .map(|(fragment, space)| {
                if space {
                    format!("{fragment} ")
                } else {
                    fragment.to_owned()
                }
            })
            .collect()
    })
}

/// Well-formed expressions of every construct.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9%_ \\\\]{0,6}".prop_map(|s| format!("'{}'", s.trim_end_matches('\\'))),
        prop::sample::select(&["x", "y", "flag", "num", "text", "id", "missing"][..])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        let op = prop::sample::select(
            &[
                "AND", "OR", "XOR", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
            ][..],
        );
        let function = prop::sample::select(
            &[
                "LENGTH",
                "CONCAT",
                "CONCAT_WS",
                "LOWER",
                "UPPER",
                "TRIM",
                "LEFT",
                "RIGHT",
                "SUBSTRING",
                "ABS",
                "INT",
                "BOOL",
                "STRING",
                "NOSUCH",
            ][..],
        );
        prop_oneof![
            (inner.clone(), op, inner.clone(), any::<bool>()).prop_map(|(a, op, b, parens)| {
                if parens {
                    format!("({a} {op} {b})")
                } else {
                    format!("{a} {op} {b}")
                }
            }),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), "[a-z%_]{0,4}", any::<bool>()).prop_map(|(a, p, not)| {
                format!("({a}) {}LIKE '{p}'", if not { "NOT " } else { "" })
            }),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(a, set)| { format!("({a}) IN ({})", set.join(", ")) }),
            (function, prop::collection::vec(inner, 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            prop::sample::select(&["x", "missing", "id"][..]).prop_map(|a| format!("EXISTS {a}")),
        ]
    })
}

/// What 32-bit checked arithmetic says `a op b` is, as CESQL reports it.
fn checked(a: i32, op: &str, b: i32) -> (Value, Vec<super::super::ErrorKind>) {
    let result = match op {
        "+" => a.checked_add(b),
        "-" => a.checked_sub(b),
        "*" => a.checked_mul(b),
        "/" => a.checked_div(b),
        _ if b == -1 => Some(0),
        _ => a.checked_rem(b),
    };
    match result {
        Some(r) => (Value::Integer(r), vec![]),
        None => (Value::Integer(0), vec![Math]),
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        parse_and_evaluate(&text);
    }

    #[test]
    fn token_sequences_never_panic(text in token_soup()) {
        parse_and_evaluate(&text);
    }

    #[test]
    fn generated_expressions_parse_and_evaluate(text in expression()) {
        prop_assert!(Expression::parse(&text).is_ok(), "{} should parse", text);
        parse_and_evaluate(&text);
    }

    #[test]
    fn arithmetic_agrees_with_checked_i32(
        a in any::<i32>(),
        b in prop_oneof![any::<i32>(), -2..3i32],
        op in prop::sample::select(&["+", "-", "*", "/", "%"][..]),
    ) {
        let want = checked(a, op, b);
        let event = TestEvent::default().with("a", Value::Integer(a)).with("b", Value::Integer(b));
        prop_assert_eq!(eval_on(&format!("a {op} b"), &event), want.clone());
        prop_assert_eq!(eval(&format!("{a} {op} {b}")), want.clone());
        prop_assert_eq!(eval(&format!("'{a}' {op} '{b}'")), want);
    }

    #[test]
    fn negation_and_abs_agree_with_checked_i32(a in any::<i32>()) {
        let event = TestEvent::default().with("a", Value::Integer(a));
        let negated = a.checked_neg().map_or((Value::Integer(0), vec![Math]), |n| (Value::Integer(n), vec![]));
        prop_assert_eq!(eval_on("-a", &event), negated);
        let abs = a.checked_abs().map_or((Value::Integer(i32::MAX), vec![Math]), |n| (Value::Integer(n), vec![]));
        prop_assert_eq!(eval_on("ABS(a)", &event), abs);
    }

    #[test]
    fn comparisons_agree_with_i32(a in any::<i32>(), b in any::<i32>()) {
        let event = TestEvent::default().with("a", Value::Integer(a)).with("b", Value::Integer(b));
        for (op, want) in [("<", a < b), ("<=", a <= b), (">", a > b), (">=", a >= b), ("=", a == b), ("!=", a != b)] {
            prop_assert_eq!(eval_on(&format!("a {op} b"), &event), (Value::Boolean(want), vec![]));
        }
    }

    #[test]
    fn integers_round_trip(a in any::<i32>()) {
        prop_assert_eq!(eval(&a.to_string()), (Value::Integer(a), vec![]));
        prop_assert_eq!(eval(&format!("STRING({a})")), (Value::String(a.to_string()), vec![]));
        prop_assert_eq!(eval(&format!("INT('{a}')")), (Value::Integer(a), vec![]));
    }

    #[test]
    fn string_literals_round_trip(s in "[^\\\\]*") {
        let literal = format!("'{}'", s.replace('\'', "\\'"));
        prop_assert_eq!(eval(&literal), (Value::String(s), vec![]));
    }

    #[test]
    fn like_without_wildcards_is_equality(s in "[a-zA-Zé ]{0,8}", t in "[a-zA-Zé ]{0,8}") {
        prop_assert_eq!(eval(&format!("'{s}' LIKE '{t}'")).0, Value::Boolean(s == t));
        prop_assert_eq!(eval(&format!("'{s}' LIKE '%'")).0, Value::Boolean(true));
        let blanks = "_".repeat(t.chars().count());
        let same_length = s.chars().count() == t.chars().count();
        prop_assert_eq!(eval(&format!("'{s}' LIKE '{blanks}'")).0, Value::Boolean(same_length));
        let contains = format!("'{s}' LIKE '%{t}%'");
        prop_assert_eq!(eval(&contains).0, Value::Boolean(s.contains(t.as_str())));
    }
}
