//! `#[background]`: an async interval loop.
use lifecycle_runtime::background;
fn flush(batch: Vec<u8>) -> ::lifecycle_runtime::TaskHandle {
    ::lifecycle_runtime::__private::spawn_background(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "auto-flush",
            stop_after: &[],
            interval: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(5),
            ),
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::Finish,
            stop_timeout: ::lifecycle_runtime::__private::Duration::from_secs(1),
            timeout: ::core::option::Option::None,
            group: ::core::option::Option::None,
            critical: false,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        move |mut __ticker| async move {
            while __ticker.next_tick().await {
                __ticker
                    .run_tick(async {
                        let outcome: () = async {
                            let _ = batch.len();
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
fn main() {
    let _handle = flush(Vec::new());
}
