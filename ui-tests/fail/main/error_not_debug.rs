struct StartError;

#[lifecycle_runtime::main]
async fn main() -> Result<(), StartError> {
    Err(StartError)
}
