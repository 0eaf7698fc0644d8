//! `raceway-backend serve`: see `docs/backend.md`.

use clap::Parser;
use raceway_backend::config::{Cli, Command, Config};

// mimalloc: per-request body buffers and per-event allocations are reused from thread-local pages instead of
// being returned to the kernel and faulted in again (see raceway-backend/BENCH_INGEST.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RACEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => match Config::resolve(&args) {
            Ok(config) => raceway_backend::api::serve(config).await,
            Err(e) => Err(anyhow::Error::msg(e)),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raceway-backend: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
