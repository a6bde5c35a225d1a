//! The `leadline` binary.

use clap::Parser;

/// mimalloc instead of the C library's allocator: the intake allocates and frees
/// many small buffers on several threads (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Blocking threads write email files and flush them; a few are enough, and
    // each idle one holds allocator memory (tokio's default allows 512).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("leadline: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Threads for blocking work (file writes and syncs), beside the workers.
const MAX_BLOCKING_THREADS: usize = 16;

async fn run() -> std::process::ExitCode {
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
