//! `sluice filter eval`: tries a CESQL expression against an event before a trigger uses it.

use std::io::Read;

use clap::Subcommand;
use serde_json::Value as Json;

use super::CliError;
use crate::filter::{Attributes, cesql};

/// Filter subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum FilterCommand {
    /// Evaluate a CESQL expression and print its value as JSON.
    Eval {
        /// The expression, e.g. "type LIKE 'order.%' AND EXISTS key".
        expression: String,
        /// A CloudEvent in structured JSON form, from a file or `-` for stdin (default: an
        /// event with only the required attributes).
        #[arg(long, value_name = "FILE")]
        event: Option<String>,
    },
}

/// The event used when none is given: the required attributes, set to valid values.
const DEFAULT_EVENT: &str =
    r#"{"specversion":"1.0","id":"1","source":"/sluice/filter-eval","type":"sluice.example"}"#;

/// Runs `sluice filter ...`; returns what to print.
pub fn run(command: &FilterCommand) -> Result<String, CliError> {
    let FilterCommand::Eval { expression, event } = command;
    let text = match event.as_deref() {
        None => DEFAULT_EVENT.to_owned(),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|err| {
                CliError::Failed(format!("cannot read the event from stdin: {err}"))
            })?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| CliError::Failed(format!("cannot read the event from {path}: {err}")))?,
    };
    evaluate(expression, &text).map_err(CliError::Failed)
}

/// The expression's value as JSON, or `<kind>: <message>` for the first error.
pub fn evaluate(expression: &str, event: &str) -> Result<String, String> {
    let members = match serde_json::from_str::<Json>(event) {
        Ok(Json::Object(members)) => members,
        Ok(_) => return Err("the event must be a JSON object (structured CloudEvent)".to_owned()),
        Err(err) => return Err(format!("the event is not JSON: {err}")),
    };
    let expression = cesql::Expression::parse(expression)
        .map_err(|err| format!("{}: {err}", cesql::ErrorKind::Parse.as_str()))?;
    let (value, errors) = expression.evaluate(&Attributes::Structured(members));
    match errors.first() {
        Some(error) => Err(format!("{}: {}", error.kind.as_str(), error.message)),
        None => Ok(value.to_json()),
    }
}
