//! `#[background]`: a loop on a named OS thread.
use lifecycle_runtime::background;
fn poll_disk(path: String) -> ::lifecycle_runtime::ThreadHandle {
    ::lifecycle_runtime::__private::spawn_background_thread(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "disk-poller",
            stop_after: &[],
            interval: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_millis(100),
            ),
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::Finish,
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_STOP_TIMEOUT,
            timeout: ::core::option::Option::None,
            group: ::core::option::Option::None,
            critical: false,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        move |mut __ticker| {
            while __ticker.next_tick() {
                __ticker
                    .run_tick(|| {
                        let outcome: () = (|| {
                            let _ = path.len();
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
    let _handle = poll_disk("/".to_owned());
}
