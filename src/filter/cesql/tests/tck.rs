//! The CESQL conformance suite (TCK) of the CloudEvents specification
//! repository, `cesql/cesql_tck/*.yaml`, ported as data: one table per file.
//!
//! A case without an event runs against [`TestEvent::full`] with the case's
//! overrides applied; a case with an event runs against exactly that event.
//! A case expecting a parse error checks only that parsing fails; every
//! other case checks both the value and that the errors are all of the
//! expected kind (and that there are some), or that there are none.

use super::super::ErrorKind::{self, *};
use super::super::{Expression, Value};
use super::TestEvent;
use Exp::*;

/// An expected value, as the TCK writes it.
#[derive(Debug, Clone, Copy)]
enum Exp {
    B(bool),
    I(i32),
    S(&'static str),
    /// The case gives no result, as for parse errors.
    Nothing,
}

impl Exp {
    fn value(self) -> Option<Value> {
        match self {
            B(b) => Some(Value::Boolean(b)),
            I(i) => Some(Value::Integer(i)),
            S(s) => Some(Value::String(s.to_owned())),
            Nothing => None,
        }
    }
}

type Attributes = &'static [(&'static str, Exp)];

struct Case {
    name: &'static str,
    expression: &'static str,
    result: Exp,
    error: Option<ErrorKind>,
    overrides: Attributes,
    event: Option<Attributes>,
}

impl Case {
    const fn new(name: &'static str, expression: &'static str, result: Exp) -> Case {
        Case {
            name,
            expression,
            result,
            error: None,
            overrides: &[],
            event: None,
        }
    }

    const fn error(mut self, kind: ErrorKind) -> Case {
        self.error = Some(kind);
        self
    }

    const fn with(mut self, overrides: Attributes) -> Case {
        self.overrides = overrides;
        self
    }

    const fn only(mut self, event: Attributes) -> Case {
        self.event = Some(event);
        self
    }

    fn input(&self) -> TestEvent {
        let mut event = match self.event {
            Some(_) => TestEvent::default(),
            None => TestEvent::full(),
        };
        for (name, value) in self.event.unwrap_or_default().iter().chain(self.overrides) {
            if let Some(value) = value.value() {
                event.set(name, value);
            }
        }
        event
    }

    /// What is wrong with this case's outcome, if anything.
    fn check(&self) -> Option<String> {
        let parsed = Expression::parse(self.expression);
        if self.error == Some(Parse) {
            return parsed.is_ok().then(|| "parsed, but should not".to_owned());
        }
        let expression = match parsed {
            Ok(e) => e,
            Err(e) => return Some(format!("did not parse: {e}")),
        };
        let (value, errors) = expression.evaluate(&self.input());
        let kinds: Vec<ErrorKind> = errors.iter().map(|e| e.kind).collect();
        let errors_ok = match self.error {
            None => kinds.is_empty(),
            Some(kind) => !kinds.is_empty() && kinds.iter().all(|k| *k == kind),
        };
        let value_ok = self.result.value().is_none_or(|want| want == value);
        (!errors_ok || !value_ok).then(|| {
            format!(
                "got {value:?} with {kinds:?}, want {:?} with {:?}",
                self.result, self.error
            )
        })
    }
}

/// Runs a table and reports every failing case at once.
fn run(file: &str, cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            case.check()
                .map(|why| format!("  {} ({:?}): {why}", case.name, case.expression))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{file}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn binary_comparison_operators() {
    run(
        "binary_comparison_operators.yaml",
        BINARY_COMPARISON_OPERATORS,
    );
}

#[test]
fn binary_logical_operators() {
    run("binary_logical_operators.yaml", BINARY_LOGICAL_OPERATORS);
}

#[test]
fn binary_math_operators() {
    run("binary_math_operators.yaml", BINARY_MATH_OPERATORS);
}

#[test]
fn case_sensitivity() {
    run("case_sensitivity.yaml", CASE_SENSITIVITY);
}

#[test]
fn casting_functions() {
    run("casting_functions.yaml", CASTING_FUNCTIONS);
}

#[test]
fn context_attributes_access() {
    run("context_attributes_access.yaml", CONTEXT_ATTRIBUTES_ACCESS);
}

#[test]
fn exists_expression() {
    run("exists_expression.yaml", EXISTS_EXPRESSION);
}

#[test]
fn in_expression() {
    run("in_expression.yaml", IN_EXPRESSION);
}

#[test]
fn integer_builtin_functions() {
    run("integer_builtin_functions.yaml", INTEGER_BUILTIN_FUNCTIONS);
}

#[test]
fn like_expression() {
    run("like_expression.yaml", LIKE_EXPRESSION);
}

#[test]
fn literals() {
    run("literals.yaml", LITERALS);
}

#[test]
fn negate_operator() {
    run("negate_operator.yaml", NEGATE_OPERATOR);
}

#[test]
fn not_operator() {
    run("not_operator.yaml", NOT_OPERATOR);
}

#[test]
fn parse_errors() {
    run("parse_errors.yaml", PARSE_ERRORS);
}

#[test]
fn spec_examples() {
    run("spec_examples.yaml", SPEC_EXAMPLES);
}

#[test]
fn string_builtin_functions() {
    run("string_builtin_functions.yaml", STRING_BUILTIN_FUNCTIONS);
}

#[test]
fn sub_expression() {
    run("sub_expression.yaml", SUB_EXPRESSION);
}

#[test]
fn subscriptions_api_recreations() {
    run(
        "subscriptions_api_recreations.yaml",
        SUBSCRIPTIONS_API_RECREATIONS,
    );
}

/// From `cesql/cesql_tck/binary_comparison_operators.yaml` (Binary comparison operations).
const BINARY_COMPARISON_OPERATORS: &[Case] = &[
    Case::new("True is equal to false", "TRUE = FALSE", B(false)),
    Case::new("False is equal to false", "FALSE = FALSE", B(true)),
    Case::new("1 is equal to 2", "1 = 2", B(false)),
    Case::new("2 is equal to 2", "2 = 2", B(true)),
    Case::new("abc is equal to 123", "'abc' = '123'", B(false)),
    Case::new("abc is equal to abc", "'abc' = 'abc'", B(true)),
    Case::new(
        "Equals operator returns false when encountering a missing attribute",
        "missing = 2",
        B(false),
    )
    .error(MissingAttribute),
    Case::new("True is not equal to false", "TRUE != FALSE", B(true)),
    Case::new("False is not equal to false", "FALSE != FALSE", B(false)),
    Case::new("1 is not equal to 2", "1 != 2", B(true)),
    Case::new("2 is not equal to 2", "2 != 2", B(false)),
    Case::new("abc is not equal to 123", "'abc' != '123'", B(true)),
    Case::new("abc is not equal to abc", "'abc' != 'abc'", B(false)),
    Case::new(
        "Not equal operator returns false when encountering a missing attribute",
        "missing != 2",
        B(false),
    )
    .error(MissingAttribute),
    Case::new(
        "True is not equal to false (diamond operator)",
        "TRUE <> FALSE",
        B(true),
    ),
    Case::new(
        "False is not equal to false (diamond operator)",
        "FALSE <> FALSE",
        B(false),
    ),
    Case::new("1 is not equal to 2 (diamond operator)", "1 <> 2", B(true)),
    Case::new("2 is not equal to 2 (diamond operator)", "2 <> 2", B(false)),
    Case::new(
        "abc is not equal to 123 (diamond operator)",
        "'abc' <> '123'",
        B(true),
    ),
    Case::new(
        "abc is not equal to abc (diamond operator)",
        "'abc' <> 'abc'",
        B(false),
    ),
    Case::new(
        "Diamond operator returns false when encountering a missing attribute",
        "missing <> 2",
        B(false),
    )
    .error(MissingAttribute),
    Case::new("1 is less or equal than 2", "2 <= 2", B(true)),
    Case::new("3 is less or equal than 2", "3 <= 2", B(false)),
    Case::new("1 is less than 2", "1 < 2", B(true)),
    Case::new("2 is less than 2", "2 < 2", B(false)),
    Case::new("2 is greater or equal than 2", "2 >= 2", B(true)),
    Case::new("2 is greater or equal than 3", "2 >= 3", B(false)),
    Case::new("2 is greater than 1", "2 > 1", B(true)),
    Case::new("2 is greater than 2", "2 > 2", B(false)),
    Case::new(
        "Less than or equal operator returns false when encountering a missing attribute",
        "missing <= 2",
        B(false),
    )
    .error(MissingAttribute),
    Case::new(
        "implicit casting with string as right type",
        "true = 'TRUE'",
        B(false),
    ),
    Case::new(
        "implicit casting with boolean as right type",
        "'TRUE' = true",
        B(true),
    ),
];

/// From `cesql/cesql_tck/binary_logical_operators.yaml` (Binary logical operations).
const BINARY_LOGICAL_OPERATORS: &[Case] = &[
    Case::new("False and false", "FALSE AND FALSE", B(false)),
    Case::new("False and true", "FALSE AND TRUE", B(false)),
    Case::new("True and false", "TRUE AND FALSE", B(false)),
    Case::new("True and true", "TRUE AND TRUE", B(true)),
    Case::new(
        "AND operator is short circuit evaluated",
        "false and (1 != 1 / 0)",
        B(false),
    ),
    Case::new(
        "AND operator is NOT short circuit evaluated when the first operand evaluates to true",
        "true and (1 != 1 / 0)",
        B(false),
    )
    .error(Math),
    Case::new("False or false", "FALSE OR FALSE", B(false)),
    Case::new("False or true", "FALSE OR TRUE", B(true)),
    Case::new("True or false", "TRUE OR FALSE", B(true)),
    Case::new("True or true", "TRUE OR TRUE", B(true)),
    Case::new(
        "OR operator is short circuit evaluated",
        "true or (1 != 1 / 0)",
        B(true),
    ),
    Case::new(
        "OR operator is NOT short circuit evaluated when the first operand evaluates to false",
        "false or (1 != 1 / 0)",
        B(false),
    )
    .error(Math),
    Case::new("False xor false", "FALSE XOR FALSE", B(false)),
    Case::new("False xor true", "FALSE XOR TRUE", B(true)),
    Case::new("True xor false", "TRUE XOR FALSE", B(true)),
    Case::new("True xor true", "TRUE XOR TRUE", B(false)),
];

/// From `cesql/cesql_tck/binary_math_operators.yaml` (Binary math operations).
const BINARY_MATH_OPERATORS: &[Case] = &[
    Case::new(
        "Operator precedence without parenthesis",
        "4 * 2 + 4 / 2",
        I(10),
    ),
    Case::new(
        "Operator precedence with parenthesis",
        "4 * (2 + 4) / 2",
        I(12),
    ),
    Case::new("Truncated division", "5 / 3", I(1)),
    Case::new("Division by zero returns 0 and fail", "5 / 0", I(0)).error(Math),
    Case::new("Module", "5 % 2", I(1)),
    Case::new("Module by zero returns 0 and fail", "5 % 0", I(0)).error(Math),
    Case::new(
        "Missing attribute in division results in missing attribute error, not divide by 0 error",
        "missing / 0",
        I(0),
    )
    .error(MissingAttribute),
    Case::new(
        "Missing attribute in modulo results in missing attribute error, not divide by 0 error",
        "missing % 0",
        I(0),
    )
    .error(MissingAttribute),
    Case::new("Positive plus positive number", "4 + 1", I(5)),
    Case::new("Negative plus positive number", "-4 + 1", I(-3)),
    Case::new("Negative plus Negative number", "-4 + -1", I(-5)),
    Case::new("Positive plus negative number", "4 + -1", I(3)),
    Case::new("Positive minus positive number", "4 - 1", I(3)),
    Case::new("Negative minus positive number", "-4 - 1", I(-5)),
    Case::new("Implicit casting, with left value string", "'5' + 3", I(8)),
    Case::new("Implicit casting, with right value string", "5 + '3'", I(8)),
    Case::new(
        "Implicit casting, with both values string",
        "'5' + '3'",
        I(8),
    ),
    Case::new("Implicit casting, with boolean value", "5 + TRUE", I(6)),
];

/// From `cesql/cesql_tck/case_sensitivity.yaml` (Case sensitivity).
const CASE_SENSITIVITY: &[Case] = &[
    Case::new("TRUE", "TRUE", B(true)),
    Case::new("true", "true", B(true)),
    Case::new("tRuE", "tRuE", B(true)),
    Case::new("FALSE", "FALSE", B(false)),
    Case::new("false", "false", B(false)),
    Case::new("FaLsE", "FaLsE", B(false)),
    Case::new("String literals casing preserved", "'aBcD'", S("aBcD")),
];

/// From `cesql/cesql_tck/casting_functions.yaml` (Casting functions).
const CASTING_FUNCTIONS: &[Case] = &[
    Case::new("Cast '1' to integer", "INT('1')", I(1)),
    Case::new("Cast '-1' to integer", "INT('-1')", I(-1)),
    Case::new("Cast identity 1", "INT(1)", I(1)),
    Case::new("Cast identity -1", "INT(-1)", I(-1)),
    Case::new("Cast from TRUE to int", "INT(TRUE)", I(1)),
    Case::new("Cast from FALSE to int", "INT(FALSE)", I(0)),
    Case::new("Invalid cast from string to int", "INT('ABC')", I(0)).error(Cast),
    Case::new("Cast 'TRUE' to boolean", "BOOL('TRUE')", B(true)),
    Case::new("Cast \"false\" to boolean", "BOOL(\"false\")", B(false)),
    Case::new("Cast identity TRUE", "BOOL(TRUE)", B(true)),
    Case::new("Cast identity FALSE", "BOOL(FALSE)", B(false)),
    Case::new(
        "Invalid cast from string to boolean",
        "BOOL('ABC')",
        B(false),
    )
    .error(Cast),
    Case::new("Cast from 1 to boolean", "BOOL(1)", B(true)),
    Case::new("Cast from 0 to boolean", "BOOL(0)", B(false)),
    Case::new("Cast from 100 to boolean", "BOOL(100)", B(true)),
    Case::new("Cast from -50 to boolean", "BOOL(-50)", B(true)),
    Case::new("Cast TRUE to string", "STRING(TRUE)", S("true")),
    Case::new("Cast FALSE to string", "STRING(FALSE)", S("false")),
    Case::new("Cast 1 to string", "STRING(1)", S("1")),
    Case::new("Cast -1 to string", "STRING(-1)", S("-1")),
    Case::new("Cast identity \"abc\"", "STRING(\"abc\")", S("abc")),
];

/// From `cesql/cesql_tck/context_attributes_access.yaml` (Context attributest test).
const CONTEXT_ATTRIBUTES_ACCESS: &[Case] = &[
    Case::new("Access to required attribute", "id", S("myId")).with(&[("id", S("myId"))]),
    Case::new("Access to optional attribute", "subject", S("mySubject"))
        .with(&[("subject", S("mySubject"))]),
    Case::new("Absent optional attribute", "subject", B(false))
        .error(MissingAttribute)
        .only(&[
            ("specversion", S("1.0")),
            ("id", S("myId")),
            ("source", S("localhost.localdomain")),
            ("type", S("myType")),
        ]),
    Case::new("Access to optional boolean extension", "mybool", B(true))
        .with(&[("mybool", B(true))]),
    Case::new("Access to optional integer extension", "myint", I(10)).with(&[("myint", I(10))]),
    Case::new(
        "Access to optional string extension",
        "myext",
        S("my extension"),
    )
    .with(&[("myext", S("my extension"))]),
    Case::new(
        "URL type cohercion to string",
        "source",
        S("http://localhost/source"),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
    Case::new(
        "Timestamp type cohercion to string",
        "time",
        S("2018-04-26T14:48:09+02:00"),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("time", S("2018-04-26T14:48:09+02:00")),
    ]),
];

/// From `cesql/cesql_tck/exists_expression.yaml` (Exists expression).
const EXISTS_EXPRESSION: &[Case] = &[
    Case::new(
        "required attributes always exist",
        "EXISTS specversion AND EXISTS id AND EXISTS type AND EXISTS SOURCE",
        B(true),
    ),
    Case::new("optional attribute available", "EXISTS time", B(true)).only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("time", S("2018-04-26T14:48:09+02:00")),
    ]),
    Case::new("optional attribute absent", "EXISTS time", B(false)).only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
    Case::new(
        "optional attribute absent (negated)",
        "NOT EXISTS time",
        B(true),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
    Case::new("optional extension available", "EXISTS myext", B(true)).only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("myext", S("my value")),
    ]),
    Case::new("optional extension absent", "EXISTS myext", B(false)).only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
    Case::new(
        "optional extension absent (negated)",
        "NOT EXISTS myext",
        B(true),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
];

/// From `cesql/cesql_tck/in_expression.yaml` (In expression).
const IN_EXPRESSION: &[Case] = &[
    Case::new(
        "int in int set",
        "123 IN (1, 2, 3, 12, 13, 23, 123)",
        B(true),
    ),
    Case::new(
        "int not in int set",
        "123 NOT IN (1, 2, 3, 12, 13, 23, 123)",
        B(false),
    ),
    Case::new("string in string set", "'abc' IN ('abc', \"bcd\")", B(true)),
    Case::new(
        "string not in string set",
        "'aaa' IN ('abc', \"bcd\")",
        B(false),
    ),
    Case::new("bool in bool set", "TRUE IN (TRUE, FALSE)", B(true)),
    Case::new("bool not in bool set", "TRUE IN (FALSE)", B(false)),
    Case::new(
        "mix literals and identifiers (1)",
        "source IN (myext, 'abc')",
        B(true),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("myext", S("http://localhost/source")),
    ]),
    Case::new(
        "mix literals and identifiers (2)",
        "source IN (source)",
        B(true),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("myext", S("http://localhost/source")),
    ]),
    Case::new(
        "mix literals and identifiers (3)",
        "source IN (id, \"http://localhost/source\")",
        B(true),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
        ("myext", S("http://localhost/source")),
    ]),
    Case::new(
        "mix literals and identifiers (4)",
        "source IN (id, 'xyz')",
        B(false),
    )
    .only(&[
        ("specversion", S("1.0")),
        ("id", S("myId")),
        ("source", S("http://localhost/source")),
        ("type", S("myType")),
    ]),
    Case::new(
        "type coercion with booleans (1)",
        "'true' IN (TRUE, 'false')",
        B(true),
    ),
    Case::new(
        "type coercion with booleans (2)",
        "'true' IN ('TRUE', 'false')",
        B(false),
    ),
    Case::new(
        "type coercion with booleans (3)",
        "TRUE IN ('true', 'false')",
        B(true),
    ),
    Case::new(
        "type coercion with booleans (4)",
        "'TRUE' IN (TRUE, 'false')",
        B(false),
    ),
    Case::new("type coercion with int (1)", "1 IN ('1', '2')", B(true)),
    Case::new("type coercion with int (2)", "'1' IN (1, 2)", B(true)),
];

/// From `cesql/cesql_tck/integer_builtin_functions.yaml` (Integer builtin functions).
const INTEGER_BUILTIN_FUNCTIONS: &[Case] = &[
    Case::new("ABS (1)", "ABS(10)", I(10)),
    Case::new("ABS (2)", "ABS(-10)", I(10)),
    Case::new("ABS (3)", "ABS(0)", I(0)),
    Case::new("ABS overflow", "ABS(-2147483648)", I(2147483647)).error(Math),
];

/// From `cesql/cesql_tck/like_expression.yaml` (Like expression).
const LIKE_EXPRESSION: &[Case] = &[
    Case::new("Exact match (1)", "'abc' LIKE 'abc'", B(true)),
    Case::new("Exact match (2)", "'ab\\c' LIKE 'ab\\c'", B(true)),
    Case::new("Exact match (negate)", "'abc' NOT LIKE 'abc'", B(false)),
    Case::new("Percentage operator (1)", "'abc' LIKE 'a%b%c'", B(true)),
    Case::new("Percentage operator (2)", "'azbc' LIKE 'a%b%c'", B(true)),
    Case::new(
        "Percentage operator (3)",
        "'azzzbzzzc' LIKE 'a%b%c'",
        B(true),
    ),
    Case::new("Percentage operator (4)", "'a%b%c' LIKE 'a%b%c'", B(true)),
    Case::new("Percentage operator (5)", "'ac' LIKE 'abc'", B(false)),
    Case::new("Percentage operator (6)", "'' LIKE 'abc'", B(false)),
    Case::new(
        "Percentage operator (7)",
        "'.ab.cde.' LIKE '.%.%.'",
        B(true),
    ),
    Case::new("Percentage operator (8)", "'ab.cde' LIKE '.%.%.'", B(false)),
    Case::new("Underscore operator (1)", "'abc' LIKE 'a_b_c'", B(false)),
    Case::new("Underscore operator (2)", "'a_b_c' LIKE 'a_b_c'", B(true)),
    Case::new("Underscore operator (3)", "'abzc' LIKE 'a_b_c'", B(false)),
    Case::new("Underscore operator (4)", "'azbc' LIKE 'a_b_c'", B(false)),
    Case::new("Underscore operator (5)", "'azbzc' LIKE 'a_b_c'", B(true)),
    Case::new("Underscore operator (6)", "'.a.b.' LIKE '._._.'", B(true)),
    Case::new("Underscore operator (7)", "'abcd.' LIKE '._._.'", B(false)),
    Case::new(
        "Escaped underscore wildcards (1)",
        "'a_b_c' LIKE 'a\\_b\\_c'",
        B(true),
    ),
    Case::new(
        "Escaped underscore wildcards (2)",
        "'a_b_c' NOT LIKE 'a\\_b\\_c'",
        B(false),
    ),
    Case::new(
        "Escaped underscore wildcards (3)",
        "'azbzc' LIKE 'a\\_b\\_c'",
        B(false),
    ),
    Case::new(
        "Escaped underscore wildcards (4)",
        "'abc' LIKE 'a\\_b\\_c'",
        B(false),
    ),
    Case::new(
        "Escaped percentage wildcards (1)",
        "'abc' LIKE 'a\\%b\\%c'",
        B(false),
    ),
    Case::new(
        "Escaped percentage wildcards (2)",
        "'a%b%c' LIKE 'a\\%b\\%c'",
        B(true),
    ),
    Case::new(
        "Escaped percentage wildcards (3)",
        "'azbzc' LIKE 'a\\%b\\%c'",
        B(false),
    ),
    Case::new(
        "Escaped percentage wildcards (4)",
        "'abc' LIKE 'a\\%b\\%c'",
        B(false),
    ),
    Case::new(
        "With access to event attributes",
        "myext LIKE 'abc%123\\%456\\_d_f'",
        B(true),
    )
    .with(&[("myext", S("abc123123%456_dzf"))]),
    Case::new(
        "With access to event attributes (negated)",
        "myext NOT LIKE 'abc%123\\%456\\_d_f'",
        B(false),
    )
    .with(&[("myext", S("abc123123%456_dzf"))]),
    Case::new("With type coercion from int (1)", "234 LIKE '23_'", B(true)),
    Case::new(
        "With type coercion from int (2)",
        "2344 LIKE '23%'",
        B(true),
    ),
    Case::new(
        "With type coercion from int (3)",
        "2344 LIKE '23_'",
        B(false),
    ),
    Case::new(
        "With type coercion from bool (1)",
        "TRUE LIKE 'tr%'",
        B(true),
    ),
    Case::new(
        "With type coercion from bool (2)",
        "TRUE LIKE '%ue'",
        B(true),
    ),
    Case::new(
        "With type coercion from bool (3)",
        "FALSE LIKE 'tr%'",
        B(false),
    ),
    Case::new(
        "With type coercion from bool (4)",
        "FALSE LIKE 'fal%'",
        B(true),
    ),
    Case::new(
        "Invalid string literal in comparison causes parse error",
        "x LIKE 123",
        B(false),
    )
    .error(Parse)
    .with(&[("x", S("123"))]),
    Case::new(
        "Missing attribute returns empty string",
        "missing LIKE 'missing'",
        B(false),
    )
    .error(MissingAttribute),
];

/// From `cesql/cesql_tck/literals.yaml` (Literals).
const LITERALS: &[Case] = &[
    Case::new("TRUE literal", "TRUE", B(true)),
    Case::new("FALSE literal", "FALSE", B(false)),
    Case::new("0 literal", "0", I(0)),
    Case::new("1 literal", "1", I(1)),
    Case::new("String literal single quoted", "'abc'", S("abc")),
    Case::new("String literal double quoted", "\"abc\"", S("abc")),
    Case::new("String literal single quoted with case", "'aBc'", S("aBc")),
    Case::new(
        "String literal double quoted with case",
        "\"AbC\"",
        S("AbC"),
    ),
    Case::new("Escaped string literal (1)", "'a\"b\\'c'", S("a\"b'c")),
    Case::new("Escaped string literal (2)", "\"a'b\\\"c\"", S("a'b\"c")),
];

/// From `cesql/cesql_tck/negate_operator.yaml` (Negate operator).
const NEGATE_OPERATOR: &[Case] = &[
    Case::new("Minus 10", "-10", I(-10)),
    Case::new("Minus minus 10", "--10", I(10)),
    Case::new("Minus 10 with casting", "-'10'", I(-10)),
    Case::new("Minus minus 10 with casting", "--'10'", I(10)),
    Case::new("Minus with boolean cast", "-TRUE", I(-1)),
    Case::new("Minus with missing attribute", "-missing", I(0)).error(MissingAttribute),
];

/// From `cesql/cesql_tck/not_operator.yaml` (Not operator).
const NOT_OPERATOR: &[Case] = &[
    Case::new("Not true", "NOT TRUE", B(false)),
    Case::new("Not false", "NOT FALSE", B(true)),
    Case::new("Not true with casting", "NOT 'TRUE'", B(false)),
    Case::new("Not false 10 with casting", "NOT 'FALSE'", B(true)),
    // The TCK still lists `true` with a cast error, from before v1 added the
    // Integer to Boolean cast; section 3.7 now casts 10 to true, so NOT 10 is
    // false without error, which is what this row asserts instead.
    Case::new("Invalid int cast", "NOT 10", B(false)),
    Case::new("Not missing attribute", "NOT missing", B(false)).error(MissingAttribute),
];

/// From `cesql/cesql_tck/parse_errors.yaml` (Parsing errors).
const PARSE_ERRORS: &[Case] = &[Case::new("No closed parenthesis", "ABC(", Nothing).error(Parse)];

/// From `cesql/cesql_tck/spec_examples.yaml` (Specification examples).
const SPEC_EXAMPLES: &[Case] = &[
    Case::new(
        "Case insensitive hops (1)",
        "int(hop) < int(ttl) and int(hop) < 1000",
        B(true),
    )
    .with(&[("hop", S("5")), ("ttl", S("10"))]),
    Case::new(
        "Case insensitive hops (2)",
        "INT(hop) < INT(ttl) AND INT(hop) < 1000",
        B(true),
    )
    .with(&[("hop", S("5")), ("ttl", S("10"))]),
    Case::new("Case insensitive hops (3)", "hop < ttl", B(true))
        .with(&[("hop", S("5")), ("ttl", S("10"))]),
    Case::new("Equals with casting (1)", "sequence = 5", B(true)).with(&[("sequence", S("5"))]),
    Case::new("Equals with casting (2)", "sequence = 5", B(false)).with(&[("sequence", S("6"))]),
    Case::new(
        "Logic expression (1)",
        "firstname = 'Francesco' OR subject = 'Francesco'",
        B(true),
    )
    .with(&[("subject", S("Francesco")), ("firstname", S("Doug"))]),
    Case::new(
        "Logic expression (2)",
        "firstname = 'Francesco' OR subject = 'Francesco'",
        B(true),
    )
    .with(&[("firstname", S("Francesco")), ("subject", S("Doug"))]),
    Case::new(
        "Logic expression (3)",
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'",
        B(true),
    )
    .with(&[
        ("subject", S("Doug")),
        ("firstname", S("Francesco")),
        ("lastname", S("Guardiani")),
    ]),
    Case::new(
        "Logic expression (4)",
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'",
        B(true),
    )
    .with(&[
        ("subject", S("Francesco Guardiani")),
        ("firstname", S("Doug")),
        ("lastname", S("Davis")),
    ]),
    Case::new("Subject exists", "EXISTS subject", B(true))
        .with(&[("subject", S("Francesco Guardiani"))]),
    Case::new(
        "Missing attribute (1)",
        "true AND (missing = \"\")",
        B(false),
    )
    .error(MissingAttribute),
    Case::new("Missing attribute (2)", "missing * 5", I(0)).error(MissingAttribute),
    Case::new("Missing attribute (3)", "1 / missing", I(0)).error(MissingAttribute),
];

/// From `cesql/cesql_tck/string_builtin_functions.yaml` (String builtin functions).
const STRING_BUILTIN_FUNCTIONS: &[Case] = &[
    Case::new("LENGTH (1)", "LENGTH('abc')", I(3)),
    Case::new("LENGTH (2)", "LENGTH('')", I(0)),
    Case::new("LENGTH (3)", "LENGTH('2')", I(1)),
    Case::new("LENGTH (4)", "LENGTH(TRUE)", I(4)),
    Case::new("CONCAT (1)", "CONCAT('a', 'b', 'c')", S("abc")),
    Case::new("CONCAT (2)", "CONCAT()", S("")),
    Case::new("CONCAT (3)", "CONCAT('a')", S("a")),
    Case::new("CONCAT_WS (1)", "CONCAT_WS(',', 'a', 'b', 'c')", S("a,b,c")),
    Case::new("CONCAT_WS (2)", "CONCAT_WS(',')", S("")),
    Case::new("CONCAT_WS (3)", "CONCAT_WS(',', 'a')", S("a")),
    Case::new(
        "CONCAT_WS without arguments doesn't exist",
        "CONCAT_WS()",
        B(false),
    )
    .error(MissingFunction),
    Case::new("LOWER (1)", "LOWER('ABC')", S("abc")),
    Case::new("LOWER (2)", "LOWER('AbC')", S("abc")),
    Case::new("LOWER (3)", "LOWER('abc')", S("abc")),
    Case::new("UPPER (1)", "UPPER('ABC')", S("ABC")),
    Case::new("UPPER (2)", "UPPER('AbC')", S("ABC")),
    Case::new("UPPER (3)", "UPPER('abc')", S("ABC")),
    Case::new("TRIM (1)", "TRIM('   a b c   ')", S("a b c")),
    Case::new("TRIM (2)", "TRIM('   a b c')", S("a b c")),
    Case::new("TRIM (3)", "TRIM('a b c   ')", S("a b c")),
    Case::new("TRIM (4)", "TRIM('a b c')", S("a b c")),
    Case::new("LEFT (1)", "LEFT('abc', 2)", S("ab")),
    Case::new("LEFT (2)", "LEFT('abc', 10)", S("abc")),
    Case::new("LEFT (3)", "LEFT('', 0)", S("")),
    Case::new("LEFT (4)", "LEFT('abc', -2)", S("abc")).error(FunctionEvaluation),
    Case::new("RIGHT (1)", "RIGHT('abc', 2)", S("bc")),
    Case::new("RIGHT (2)", "RIGHT('abc', 10)", S("abc")),
    Case::new("RIGHT (3)", "RIGHT('', 0)", S("")),
    Case::new("RIGHT (4)", "RIGHT('abc', -2)", S("abc")).error(FunctionEvaluation),
    Case::new("SUBSTRING (1)", "SUBSTRING('abcdef', 1)", S("abcdef")),
    Case::new("SUBSTRING (2)", "SUBSTRING('abcdef', 2)", S("bcdef")),
    Case::new(
        "SUBSTRING (3)",
        "SUBSTRING('Quadratically', 5)",
        S("ratically"),
    ),
    Case::new("SUBSTRING (4)", "SUBSTRING('Sakila', -3)", S("ila")),
    Case::new("SUBSTRING (5)", "SUBSTRING('abcdef', 1, 6)", S("abcdef")),
    Case::new("SUBSTRING (6)", "SUBSTRING('abcdef', 2, 4)", S("bcde")),
    Case::new("SUBSTRING (7)", "SUBSTRING('Sakila', -5, 3)", S("aki")),
    Case::new("SUBSTRING (8)", "SUBSTRING('Quadratically', 0)", S("")),
    Case::new("SUBSTRING (9)", "SUBSTRING('Quadratically', 0, 1)", S("")),
    Case::new("SUBSTRING (10)", "SUBSTRING('abcdef', 10)", S("")).error(FunctionEvaluation),
    Case::new("SUBSTRING (11)", "SUBSTRING('abcdef', -10)", S("")).error(FunctionEvaluation),
    Case::new("SUBSTRING (12)", "SUBSTRING('abcdef', 10, 10)", S("")).error(FunctionEvaluation),
    Case::new("SUBSTRING (13)", "SUBSTRING('abcdef', -10, 10)", S("")).error(FunctionEvaluation),
];

/// From `cesql/cesql_tck/sub_expression.yaml` (Sub expressions).
const SUB_EXPRESSION: &[Case] = &[
    Case::new("Sub expression with literal", "(TRUE)", B(true)),
    Case::new("Math (1)", "4 * (2 + 3)", I(20)),
    Case::new("Math (2)", "(2 + 3) * 4", I(20)),
];

/// From `cesql/cesql_tck/subscriptions_api_recreations.yaml` (SubscriptionsAPI Recreations).
const SUBSCRIPTIONS_API_RECREATIONS: &[Case] = &[
    Case::new("Prefix filter (1)", "source LIKE 'https://%'", B(true)).with(&[("source", S("https://example.com"))]),
    Case::new("Prefix filter (2)", "source LIKE 'https://%'", B(false)).with(&[("source", S("http://example.com"))]),
    Case::new("Prefix filter on string extension", "myext LIKE 'custom%'", B(true)).with(&[("myext", S("customext"))]),
    Case::new("Prefix filter on missing string extension", "myext LIKE 'custom%'", B(false)).error(MissingAttribute),
    Case::new("Suffix filter (1)", "type like '%.error'", B(true)).with(&[("type", S("com.github.error"))]),
    Case::new("Suffix filter (2)", "type like '%.error'", B(false)).with(&[("type", S("com.github.success"))]),
    Case::new("Suffix filter on string extension", "myext LIKE '%ext'", B(true)).with(&[("myext", S("customext"))]),
    Case::new("Suffix filter on missing string extension", "myext LIKE '%ext'", B(false)).error(MissingAttribute),
    Case::new("Exact filter (1)", "id = 'myId'", B(true)).with(&[("id", S("myId"))]),
    Case::new("Exact filter  (2)", "id = 'myId'", B(false)).with(&[("id", S("notmyId"))]),
    Case::new("Exact filter on string extension", "myext = 'customext'", B(true)).with(&[("myext", S("customext"))]),
    Case::new("Exact filter on missing string extension", "myext = 'customext'", B(false)).error(MissingAttribute),
    Case::new("Prefix filter AND Suffix filter (1)", "id LIKE 'my%' AND source LIKE '%.ca'", B(true)).with(&[("id", S("myId")), ("source", S("http://www.some-website.ca"))]),
    Case::new("Prefix filter AND Suffix filter (2)", "id LIKE 'my%' AND source LIKE '%.ca'", B(false)).with(&[("id", S("myId")), ("source", S("http://www.some-website.com"))]),
    Case::new("Prefix filter AND Suffix filter (3)", "myext LIKE 'custom%' AND type LIKE '%.error'", B(true)).with(&[("myext", S("customext")), ("type", S("com.github.error"))]),
    Case::new("Prefix AND Suffix filter (4)", "type LIKE 'example.%' AND myext LIKE 'custom%'", B(false)).error(MissingAttribute).with(&[("type", S("example.event.type"))]),
    Case::new("Prefix OR Suffix filter (1)", "id LIKE 'my%' OR source LIKE '%.ca'", B(true)).with(&[("id", S("myId")), ("source", S("http://www.some-website.ca"))]),
    Case::new("Prefix OR Suffix filter (2)", "id LIKE 'my%' OR source LIKE '%.ca'", B(true)).with(&[("id", S("myId")), ("source", S("http://www.some-website.com"))]),
    Case::new("Prefix OR Suffix filter (3)", "id LIKE 'my%' OR source LIKE '%.ca'", B(true)).with(&[("id", S("notmyId")), ("source", S("http://www.some-website.ca"))]),
    Case::new("Prefix OR Suffix filter (4)", "id LIKE 'my%' OR source LIKE '%.ca'", B(false)).with(&[("id", S("notmyId")), ("source", S("http://www.some-website.com"))]),
    Case::new("Disjunctive Normal Form (1)", "(id = 'myId' AND type LIKE '%.success') OR (id = 'notmyId' AND source LIKE 'http://%' AND type LIKE '%.warning')", B(true)).with(&[("id", S("myId")), ("type", S("example.event.success"))]),
    Case::new("Disjunctive Normal Form (2)", "(id = 'myId' AND type LIKE '%.success') OR (id = 'notmyId' AND source LIKE 'http://%' AND type LIKE '%.warning')", B(true)).with(&[("id", S("notmyId")), ("type", S("example.event.warning")), ("source", S("http://localhost.localdomain"))]),
    Case::new("Disjunctive Normal Form (3)", "(id = 'myId' AND type LIKE '%.success') OR (id = 'notmyId' AND source LIKE 'http://%' AND type LIKE '%.warning')", B(false)).with(&[("id", S("notmyId")), ("type", S("example.event.warning")), ("source", S("https://localhost.localdomain"))]),
    Case::new("Conjunctive Normal Form (1)", "(id = 'myId' OR type LIKE '%.success') AND (id = 'notmyId' OR source LIKE 'https://%' OR type LIKE '%.warning')", B(true)).with(&[("id", S("myId")), ("type", S("example.event.warning")), ("source", S("http://localhost.localdomain"))]),
    Case::new("Conjunctive Normal Form (2)", "(id = 'myId' OR type LIKE '%.success') AND (id = 'notmyId' OR source LIKE 'https://%' OR type LIKE '%.warning')", B(true)).with(&[("id", S("notmyId")), ("type", S("example.event.success")), ("source", S("http://localhost.localdomain"))]),
    Case::new("Conjunctive Normal Form (3)", "(id = 'myId' OR type LIKE '%.success') AND (id = 'notmyId' OR source LIKE 'https://%' OR type LIKE '%.warning')", B(false)).with(&[("id", S("notmyId")), ("type", S("example.event.warning")), ("source", S("http://localhost.localdomain"))]),
    Case::new("Conjunctive Normal Form (4)", "(id = 'myId' OR type LIKE '%.success') AND (id = 'notmyId' OR source LIKE 'https://%' OR type LIKE '%.warning')", B(false)).with(&[("id", S("myId")), ("type", S("example.event.success")), ("source", S("http://localhost.localdomain"))]),
    Case::new("Conjunctive Normal Form (5)", "(id = 'myId' OR type LIKE '%.success') AND (id = 'notmyId' OR source LIKE 'https://%' OR type LIKE '%.warning') AND (myext = 'customext')", B(false)).error(MissingAttribute).with(&[("id", S("myId")), ("type", S("example.event.warning")), ("source", S("http://localhost.localdomain"))]),
];
