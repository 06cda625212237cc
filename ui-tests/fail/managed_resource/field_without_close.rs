use lifecycle_runtime::managed_resource;

struct Socket;

#[managed_resource]
struct Client {
    timeout_secs: u64,
    socket: Socket,
}

fn main() {}
