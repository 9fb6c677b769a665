//! The `sluice` binary: parse the command line, set up logging, run the library.

use std::process::ExitCode;

use clap::Parser;
use std::io::IsTerminal;

use sluice::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Logs from the embedded broker's crates are noisy at info; they are kept to warnings unless
/// asked for with RUST_LOG.
const QUIET_DEPENDENCIES: &str = "nisshi_broker=warn,nisshi_storage=warn,nisshi_service=warn,nisshi_sans_io=warn,nisshi_auth=warn,libsql=warn,rama=warn,tokio_postgres=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Client commands report a broker they cannot reach in their own error; librdkafka's
    // connection errors would only repeat it.
    let client_noise = match cli.command {
        Command::Up(_) | Command::Broker(_) => "",
        _ => ",librdkafka=off,rdkafka=off",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{QUIET_DEPENDENCIES}{client_noise}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }

    if matches!(cli.command, Command::Up(_) | Command::Broker(_)) {
        raise_open_file_limit();
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli::run(cli));
    // A blocked stdin read must not keep the process alive after the command finished.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Raises the open-file soft limit to the hard one: a trigger holds about 16 descriptors
/// idle and one more per HTTP connection, a stream client one, a broker client one; the
/// usual soft limit of 1,024 runs out at about 60 triggers.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!(error = %err, soft, hard, "Cannot raise the open-file limit.");
    }
}
