//! Deep and large inputs: the parser's limits turn them into parse errors
//! before they could exhaust the stack in parsing, evaluating, cloning or
//! dropping the tree.

use super::super::Expression;
use super::super::parser::{MAX_HEIGHT, MAX_NESTING};
use super::TestEvent;

fn parses(text: &str) -> bool {
    Expression::parse(text).is_ok()
}

/// Runs `f` on a thread with a small stack, as event routers' worker threads may have.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// Release builds need well under this; unoptimized ones, with their larger
/// frames, need up to about three times as much.
const STACK: usize = if cfg!(debug_assertions) {
    1024 * 1024
} else {
    256 * 1024
};

fn parens(n: usize) -> String {
    format!("{}1{}", "(".repeat(n), ")".repeat(n))
}

fn chain(n: usize) -> String {
    format!("1{}", " + 1".repeat(n))
}

#[test]
fn parentheses_nest_up_to_the_limit() {
    // The whole expression is the first level.
    assert!(parses(&parens(MAX_NESTING - 1)));
    let error = Expression::parse(&parens(MAX_NESTING)).unwrap_err();
    assert!(error.message.contains("nests"), "{error}");
    assert_eq!(error.offset, MAX_NESTING);
}

#[test]
fn prefix_operators_and_calls_count_as_nesting() {
    assert!(parses(&format!("{}TRUE", "NOT ".repeat(MAX_NESTING - 1))));
    assert!(!parses(&format!("{}TRUE", "NOT ".repeat(MAX_NESTING))));
    assert!(!parses(&format!("{}1", "- ".repeat(MAX_NESTING))));
    let calls = |n: usize| format!("{}'a'{}", "LENGTH(".repeat(n), ")".repeat(n));
    assert!(parses(&calls(MAX_NESTING - 1)));
    assert!(!parses(&calls(MAX_NESTING)));
    let sets = |n: usize| format!("{}1{}", "1 IN (".repeat(n), ")".repeat(n));
    assert!(parses(&sets(MAX_NESTING - 1)));
    assert!(!parses(&sets(MAX_NESTING)));
}

#[test]
fn binary_chains_are_limited_in_height() {
    assert!(parses(&chain(MAX_HEIGHT - 1)));
    let error = Expression::parse(&chain(MAX_HEIGHT)).unwrap_err();
    assert!(error.message.contains("deep"), "{error}");
    assert!(!parses(&format!("'a'{}", " LIKE 'a'".repeat(MAX_HEIGHT))));
    assert!(!parses(&format!("TRUE{}", " AND TRUE".repeat(100_000))));
}

#[test]
fn huge_inputs_fail_cleanly() {
    assert!(!parses(&"(".repeat(1_000_000)));
    assert!(!parses(&"NOT ".repeat(1_000_000)));
    assert!(!parses(&"-".repeat(1_000_000)));
    assert!(!parses(&format!("1{}", "+1".repeat(1_000_000))));
    assert!(!parses(&"9".repeat(1_000_000)));
}

#[test]
fn the_deepest_expressions_run_on_a_small_stack() {
    on_small_stack(|| {
        let event = TestEvent::full();
        let deepest = [
            parens(MAX_NESTING - 1),
            chain(MAX_HEIGHT - 1),
            format!("{}TRUE", "NOT ".repeat(MAX_NESTING - 1)),
            format!("{}1", "-".repeat(MAX_NESTING - 1)),
            format!(
                "{}1{}",
                "ABS(".repeat(MAX_NESTING - 1),
                ")".repeat(MAX_NESTING - 1)
            ),
            format!(
                "{}1{}",
                "1 IN (".repeat(MAX_NESTING - 1),
                ")".repeat(MAX_NESTING - 1)
            ),
            // A chain inside nested parentheses is as tall as the tree may be.
            format!(
                "{}{}{}",
                "(1 + ".repeat(MAX_NESTING - 2),
                chain(MAX_HEIGHT - MAX_NESTING),
                ")".repeat(MAX_NESTING - 2)
            ),
        ];
        for text in deepest {
            let expression = Expression::parse(&text).unwrap();
            let copy = expression.clone();
            let _ = copy.evaluate(&event);
            drop(copy);
            let _ = expression.evaluate(&event);
        }
        for text in [parens(MAX_NESTING + 1), chain(MAX_HEIGHT + 1)] {
            assert!(Expression::parse(&text).is_err());
        }
    });
}
