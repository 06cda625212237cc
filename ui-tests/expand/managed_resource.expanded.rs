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
struct Client {
    connection: Connection,
    replica: Connection,
    socket: Socket,
    retries: u32,
}
const _: () = {
    fn field_connection_must_implement_close<T: ::lifecycle_runtime::Close>(
        value: &T,
    ) -> ::lifecycle_runtime::__private::CloseFuture<'_> {
        ::lifecycle_runtime::__private::close_boxed(value)
    }
    fn field_replica_must_implement_close<T: ::lifecycle_runtime::Close>(
        value: &T,
    ) -> ::lifecycle_runtime::__private::CloseFuture<'_> {
        ::lifecycle_runtime::__private::close_boxed(value)
    }
    impl ::lifecycle_runtime::Close for Client {
        async fn close(
            &self,
        ) -> ::core::result::Result<(), ::lifecycle_runtime::CloseError> {
            let mut fields = ::lifecycle_runtime::__private::ClosingFields::new(
                "Client",
            );
            fields
                .before_close(
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                    ::lifecycle_runtime::__private::close_with(Self::flush(self)),
                )
                .await;
            fields
                .field(
                    "connection",
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                    field_connection_must_implement_close::<Connection>(&self.connection),
                )
                .await;
            fields
                .field(
                    "replica",
                    ::lifecycle_runtime::__private::Duration::from_millis(500),
                    field_replica_must_implement_close::<Connection>(&self.replica),
                )
                .await;
            fields
                .field(
                    "socket",
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                    ::lifecycle_runtime::__private::close_with(hang_up(&self.socket)),
                )
                .await;
            fields.skipped("retries", "plain settings");
            fields.finish()
        }
        fn close_timeout(&self) -> ::lifecycle_runtime::__private::Duration {
            ::lifecycle_runtime::__private::resource_timeout(
                &[
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                    ::lifecycle_runtime::__private::Duration::from_millis(500),
                    ::lifecycle_runtime::__private::Duration::from_secs(2),
                ],
            )
        }
        fn close_name(&self) -> ::lifecycle_runtime::__private::Cow<'static, str> {
            ::lifecycle_runtime::__private::Cow::Borrowed("Client")
        }
    }
};
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
