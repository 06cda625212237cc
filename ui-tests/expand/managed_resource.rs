//! `#[managed_resource]`: `before_close`, `with`, `skip`, a field timeout and `Close` fields.

use lifecycle_runtime::{Close, CloseError, managed_resource};

struct Connection;

impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}

struct Socket;

async fn hang_up(_socket: &Socket) -> std::io::Result<()> {
    Ok(())
}

#[managed_resource(before_close = Self::flush, close_timeout = "2s")]
struct Client {
    connection: Connection,
    #[close(timeout = "500ms")]
    replica: Connection,
    #[close(with = hang_up)]
    socket: Socket,
    #[close(skip = "plain settings")]
    retries: u32,
}

impl Client {
    async fn flush(&self) {}
}

fn main() {
    let _client = Client {
        connection: Connection,
        replica: Connection,
        socket: Socket,
        retries: 3,
    };
}
