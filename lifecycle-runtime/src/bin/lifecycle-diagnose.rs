//! `lifecycle-diagnose --url URL [--app NAME] [--kill-leaked] [--emergency] [--json]`: see
//! `lifecycle_runtime::db::diagnose`.

fn main() -> std::process::ExitCode {
    lifecycle_runtime::db::diagnose::main_with(std::env::args().skip(1))
}
