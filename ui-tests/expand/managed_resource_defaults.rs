//! `#[managed_resource]` without `close_timeout`: the hook and each field without a timeout of
//! its own close under the runtime's default, named through `__private`.

use lifecycle_runtime::{Close, CloseError, managed_resource};

struct Connection;

impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}

#[managed_resource(before_close = Self::flush)]
struct Pool {
    primary: Connection,
    #[close(timeout = "500ms")]
    replica: Connection,
}

impl Pool {
    async fn flush(&self) {}
}

fn main() {
    let _pool = Pool {
        primary: Connection,
        replica: Connection,
    };
}
