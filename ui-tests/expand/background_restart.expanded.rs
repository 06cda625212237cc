//! `#[background]`: supervised services, restarted when they fail (or, with `"always"`, when
//! they return before shutdown), at most `max_restarts` times in its period.
use lifecycle_runtime::{Shutdown, background};
fn feed(url: String) -> ::lifecycle_runtime::TaskHandle {
    ::lifecycle_runtime::__private::spawn_supervised(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "feed",
            stop_after: &[],
            interval: ::core::option::Option::None,
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::Finish,
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_STOP_TIMEOUT,
            timeout: ::core::option::Option::None,
            group: ::core::option::Option::None,
            critical: true,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        ::lifecycle_runtime::__private::RestartSpec {
            restart: ::lifecycle_runtime::__private::Restart::OnFailure,
            max_restarts: 3,
            period: ::lifecycle_runtime::__private::Duration::from_secs(10),
        },
        move |mut __ticker| async move {
            while __ticker.next_tick().await {
                let shutdown: Shutdown = __ticker.shutdown();
                __ticker
                    .run_tick(async {
                        let outcome: Result<(), String> = async {
                            let _ = url.len();
                            shutdown.triggered().await;
                            Ok(())
                        }
                            .await;
                        ::lifecycle_runtime::__private::TickResult::into_tick_result(
                            outcome,
                        )
                    })
                    .await;
            }
            __ticker
        },
    )
}
fn reader() -> ::lifecycle_runtime::ThreadHandle {
    ::lifecycle_runtime::__private::spawn_supervised_thread(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "reader",
            stop_after: &[],
            interval: ::core::option::Option::None,
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::Finish,
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_STOP_TIMEOUT,
            timeout: ::core::option::Option::None,
            group: ::core::option::Option::None,
            critical: false,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        ::lifecycle_runtime::__private::RestartSpec {
            restart: ::lifecycle_runtime::__private::Restart::Always,
            max_restarts: ::lifecycle_runtime::__private::DEFAULT_MAX_RESTARTS,
            period: ::lifecycle_runtime::__private::DEFAULT_RESTART_PERIOD,
        },
        move |mut __ticker| {
            while __ticker.next_tick() {
                let shutdown: Shutdown = __ticker.shutdown();
                __ticker
                    .run_tick(|| {
                        let outcome: () = (|| {
                            shutdown.wait_blocking();
                        })();
                        ::lifecycle_runtime::__private::TickResult::into_tick_result(
                            outcome,
                        )
                    });
            }
            __ticker
        },
    )
}
fn main() {
    let _feed = feed("postgres://db".to_owned());
    let _reader = reader();
}
