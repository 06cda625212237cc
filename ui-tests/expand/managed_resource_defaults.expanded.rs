//! `#[managed_resource]` without `close_timeout`: the hook and each field without a timeout of
//! its own close under the runtime's default, named through `__private`.
use lifecycle_runtime::{Close, CloseError, managed_resource};
struct Connection;
impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}
struct Pool {
    primary: Connection,
    replica: Connection,
}
const _: () = {
    fn field_primary_must_implement_close<T: ::lifecycle_runtime::Close>(
        value: &T,
    ) -> ::lifecycle_runtime::__private::CloseFuture<'_> {
        ::lifecycle_runtime::__private::close_boxed(value)
    }
    fn field_replica_must_implement_close<T: ::lifecycle_runtime::Close>(
        value: &T,
    ) -> ::lifecycle_runtime::__private::CloseFuture<'_> {
        ::lifecycle_runtime::__private::close_boxed(value)
    }
    impl ::lifecycle_runtime::Close for Pool {
        async fn close(
            &self,
        ) -> ::core::result::Result<(), ::lifecycle_runtime::CloseError> {
            let mut fields = ::lifecycle_runtime::__private::ClosingFields::new("Pool");
            fields
                .before_close(
                    ::lifecycle_runtime::__private::DEFAULT_CLOSE_TIMEOUT,
                    ::lifecycle_runtime::__private::close_with(Self::flush(self)),
                )
                .await;
            fields
                .field(
                    "primary",
                    ::lifecycle_runtime::__private::DEFAULT_CLOSE_TIMEOUT,
                    field_primary_must_implement_close::<Connection>(&self.primary),
                )
                .await;
            fields
                .field(
                    "replica",
                    ::lifecycle_runtime::__private::Duration::from_millis(500),
                    field_replica_must_implement_close::<Connection>(&self.replica),
                )
                .await;
            fields.finish()
        }
        fn close_timeout(&self) -> ::lifecycle_runtime::__private::Duration {
            ::lifecycle_runtime::__private::resource_timeout(
                &[
                    ::lifecycle_runtime::__private::DEFAULT_CLOSE_TIMEOUT,
                    ::lifecycle_runtime::__private::DEFAULT_CLOSE_TIMEOUT,
                    ::lifecycle_runtime::__private::Duration::from_millis(500),
                ],
            )
        }
        fn close_name(&self) -> ::lifecycle_runtime::__private::Cow<'static, str> {
            ::lifecycle_runtime::__private::Cow::Borrowed("Pool")
        }
    }
};
impl Pool {
    async fn flush(&self) {}
}
fn main() {
    let _pool = Pool {
        primary: Connection,
        replica: Connection,
    };
}
