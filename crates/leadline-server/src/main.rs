//! The `leadline` binary.

use clap::Parser;

/// mimalloc instead of the C library's allocator: the intake allocates and frees
/// many small buffers on several threads (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Everything Leadline creates (data directory, database, backups, emails)
    // holds secrets and personal data: owner only, whatever umask it inherits.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let cli = leadline_server::cli::Cli::parse();
    match leadline_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadline: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
