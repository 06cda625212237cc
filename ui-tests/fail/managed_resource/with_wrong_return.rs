use lifecycle_runtime::managed_resource;

struct Socket;

async fn hang_up(_socket: &Socket) -> u32 {
    0
}

#[managed_resource]
struct Client {
    #[close(with = hang_up)]
    socket: Socket,
}

fn main() {}
