use lifecycle_runtime::managed_resource;

struct Socket;

#[managed_resource]
struct Client(u64, Socket);

fn main() {}
