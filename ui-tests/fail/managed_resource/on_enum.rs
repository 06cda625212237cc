use lifecycle_runtime::managed_resource;

#[managed_resource]
enum Connection {
    Open(u32),
    Closed,
}

fn main() {
    let _ = Connection::Open(1);
    let _ = Connection::Closed;
}
