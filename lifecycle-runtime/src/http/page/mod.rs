//! The status page (`GET /lifecycle`): one HTML document with its stylesheet and script inlined
//! at compile time (`head.html`, `page.css`, `body.html`, `page.js` beside this file), so it works offline
//! and needs no build step. The script polls `health/tasks` (the [`Snapshot`](crate::Snapshot)
//! of [`health_routes`](super::health_routes)), relative to the page.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The whole page, as served.
const PAGE: &str = concat!(
    include_str!("head.html"),
    "<style>\n",
    include_str!("page.css"),
    "</style>\n</head>\n",
    include_str!("body.html"),
    "<script>\n",
    include_str!("page.js"),
    "</script>\n</body>\n</html>\n",
);

/// The status page: `GET /lifecycle`, a live view of the program. Merge it beside
/// [`health_routes`](super::health_routes), whose `/health/tasks` (the [`Snapshot`](crate::Snapshot) as JSON) is
/// all the page reads.
///
/// The page (plain HTML, CSS and JavaScript inside this crate: nothing fetched from elsewhere,
/// no build step) asks for the snapshot twice a second and shows:
///
/// - the readiness phase (`#phase`), and whether the server still answers (`#connection`: after
///   a request fails or takes over 2 s, "not answering", with the last view kept on screen);
/// - tasks and threads grouped by name (`tr[data-task]`, `tr[data-thread]`) with their count,
///   state (`data-state`), ticks, restarts and last failure; a group with a failure or a restart
///   under way is highlighted (`data-failing="true"`);
/// - counters; task groups with their permits in use, limit and waiters; resources in the order
///   they will close, each with its close limit (`li[data-resource]`, `data-limit` in seconds, or `none`);
/// - each pool (`[data-pool]`) with its connections in use, idle and awaited, its waits and
///   timeouts, and the holders of checked-out connections (`tr[data-site]`): where each was
///   acquired, by which task, for how long;
/// - once shutdown starts, its timeline as a waterfall, redrawn as it goes (`#waterfall`, one
///   `.waterfall-row` per report entry, with `data-outcome`, and one per thing still awaited,
///   with `data-pending`; a worker of a stop order's stage not told yet is a row without a bar,
///   with `data-not-told`): each bar runs from the entry's start to its end on the scale of the
///   shutdown budget, as the report's timeline prints it. It keeps drawing until the server stops
///   answering (with `http::serve`, at the end of the drain).
///
/// The page shows the coordinator whose snapshot `/health/tasks` serves (with
/// `health_routes`, the one current when that was called: the global one under
/// `#[lifecycle_runtime::main]`).
///
/// ```
/// use lifecycle_runtime::http::axum::Router;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let router: Router = Router::new()
///     .merge(lifecycle_runtime::http::health_routes())
///     .merge(lifecycle_runtime::http::status_page());
/// # let _ = router;
/// # }
/// ```
pub fn status_page() -> Router {
    Router::new().route("/lifecycle", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_is_one_document_with_its_style_and_script_inlined() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.trim_end().ends_with("</html>"));
        for needle in [
            "id=\"phase\"",
            "id=\"waterfall\"",
            "function render",
            ".waterfall-row",
        ] {
            assert!(PAGE.contains(needle), "the page lacks {needle}");
        }
        // Works offline: nothing is loaded from another host.
        for needle in ["http://", "https://", "src=\"", "@import", "url("] {
            assert!(!PAGE.contains(needle), "the page loads something: {needle}");
        }
        assert_eq!(PAGE.matches("href=").count(), 1, "only the empty icon");
        assert!(PAGE.contains("<link rel=\"icon\" href=\"data:,\">"));
    }
}
