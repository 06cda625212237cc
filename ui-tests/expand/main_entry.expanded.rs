//! `#[lifecycle_runtime::main]` with a budget and a drain.
fn main() -> ::std::process::ExitCode {
    ::lifecycle_runtime::__private::run_main::<
        (),
        _,
    >(
        ::lifecycle_runtime::__private::MainSpec {
            shutdown_timeout: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(30),
            ),
            drain: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(1),
            ),
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_MAIN_STOP_TIMEOUT,
            ready_at_start: false,
            report: ::lifecycle_runtime::__private::ReportFormat::Text,
            worker_threads: ::core::option::Option::None,
            flavor: ::lifecycle_runtime::__private::Flavor::MultiThread,
        },
        async move {
            lifecycle_runtime::shutdown_signal().triggered().await;
        },
    )
}
