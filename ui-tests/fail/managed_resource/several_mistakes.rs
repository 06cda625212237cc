use lifecycle_runtime::managed_resource;

struct Socket;

// Every mistake is reported in one compile.
#[managed_resource(close_timeout = "0s", nmae = "client")]
struct Client {
    #[close(skip)]
    settings: u32,
    #[close(timeout = "soon")]
    retries: u32,
    socket: Socket,
}

fn main() {}
