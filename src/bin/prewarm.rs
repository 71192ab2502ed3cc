//! The `prewarm` operator command: see the crate's `cli` module (`prewarm --help`).
//!
//! ```text
//! cargo install --path . --features cli
//! ```

fn main() -> std::process::ExitCode {
    prewarm::cli::main()
}
