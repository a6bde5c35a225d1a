//! The `leadline` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = leadline_server::cli::Cli::parse();
    match leadline_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadline: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
