//! `#[background]`: a flusher with one last tick after shutdown.
use lifecycle_runtime::{Shutdown, background};
fn flusher() -> ::lifecycle_runtime::TaskHandle {
    ::lifecycle_runtime::__private::spawn_background(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "flusher",
            stop_after: &[],
            interval: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(1),
            ),
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::FinalTick,
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_STOP_TIMEOUT,
            timeout: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(10),
            ),
            group: ::core::option::Option::None,
            critical: false,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        move |mut __ticker| async move {
            while __ticker.next_tick().await {
                let shutdown: Shutdown = __ticker.shutdown();
                __ticker
                    .run_tick(async {
                        let outcome: () = async { if shutdown.is_triggered() {} }.await;
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
fn main() {
    let _handle = flusher();
}
