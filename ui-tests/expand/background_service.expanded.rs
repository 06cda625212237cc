//! `#[background]`: a service that runs once and watches its `Shutdown`.
use lifecycle_runtime::{Shutdown, background};
fn serve(port: u16) -> ::lifecycle_runtime::TaskHandle {
    ::lifecycle_runtime::__private::spawn_background(
        ::lifecycle_runtime::__private::BackgroundSpec {
            name: "serve",
            stop_after: &[],
            interval: ::core::option::Option::None,
            shutdown: ::lifecycle_runtime::__private::ShutdownMode::Finish,
            stop_timeout: ::lifecycle_runtime::__private::DEFAULT_STOP_TIMEOUT,
            timeout: ::core::option::Option::None,
            group: ::core::option::Option::None,
            critical: true,
            missed_tick: ::lifecycle_runtime::__private::DEFAULT_MISSED_TICK,
        },
        move |mut __ticker| async move {
            if __ticker.next_tick().await {
                let shutdown: Shutdown = __ticker.shutdown();
                __ticker
                    .run_tick(async {
                        let outcome: Result<(), String> = async {
                            let _ = port;
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
fn main() {
    let _handle = serve(8080);
}
