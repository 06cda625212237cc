//! `lifecycle-diagnose [--url URL] [--app NAME] [--kill-leaked] [--emergency] [--json]`: see
//! `lifecycle-diagnose --help` and `lifecycle_runtime::db::diagnose`. Needs feature `cli`.

fn main() -> std::process::ExitCode {
    lifecycle_runtime::db::diagnose::cli::main()
}
