//! Items for the fuzz cases: real fns and structs of every shape for each attribute (generics,
//! where clauses, receivers, `const`/`unsafe`/`extern`, `#[close(...)]` fields), mostly mutated,
//! sometimes another kind's or random tokens.

use std::str::FromStr;

use proc_macro2::TokenStream;
use quote::quote;

use super::generate::{random_stream, structured_args};
use super::mutate;
use super::rng::Rng;

/// What an attribute goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ItemKind {
    Fn,
    Struct,
}

/// Fns of every shape the fn attributes meet: services, loops, threads, entry points, `Result`s,
/// receivers, borrowed and patterned parameters, generics and where clauses, `const`, `unsafe`,
/// `extern`, variadics, raw names, and bodies that spawn or block.
const FNS: &[&str] = &[
    "async fn tick() {}",
    "async fn tick(shutdown: Shutdown) -> Result<(), std::io::Error> { shutdown.triggered().await; Ok(()) }",
    "fn work(s: Shutdown) {}",
    "fn work() -> Result<(), String> { Ok(()) }",
    "pub async fn serve(shutdown: lifecycle_runtime::Shutdown, port: u16) -> anyhow::Result<()> { Ok(()) }",
    "async fn main() {}",
    "async fn main() -> Result<(), Box<dyn std::error::Error>> { Ok(()) }",
    "async fn load(id: u32) -> Result<String, Error> { Ok(id.to_string()) }",
    "#[doc = \"x\"] #[inline] pub(crate) async fn tick<T: Send + 'static>(value: T) where T: Clone {}",
    "async fn tick(&self) {}",
    "async fn tick(self: Arc<Self>, shutdown: Shutdown) {}",
    "async fn borrow(x: &str, shutdown: Shutdown) {}",
    "const fn nothing() {}",
    "async unsafe fn danger(shutdown: Shutdown) {}",
    "unsafe extern \"C\" fn c_work(s: Shutdown) {}",
    "unsafe extern \"C\" fn variadic(x: u32, ...) {}",
    "async fn two(a: Shutdown, b: lc::Shutdown) {}",
    "fn spawns() { std::thread::spawn(|| {}); tokio::spawn(async {}); std::thread::Builder::new().name(n).spawn(|| {}); }",
    "async fn sleepy() { std::thread::sleep(d); tokio::task::spawn_blocking(|| thread::sleep(d)); block_in_place(|| thread::sleep(d)); }",
    "async fn patterns((a, b): (u32, u32), Point { x, .. }: Point, mut shutdown: Shutdown) {}",
    "async fn r#type(r#fn: Shutdown) -> impl Future<Output = ()> {}",
    "async fn generic<'a, T, const N: usize>(x: [T; N]) -> Result<&'a str, E> where T: 'a { let _ = x; Ok(\"\") }",
    "async fn qualified(s: <T as Trait>::Shutdown, t: Self, u: lifecycle_runtime::Shutdown<'a>) {}",
    "#[lifecycle_runtime::timeout(\"1s\")] async fn stacked() -> Result<(), E> { Ok(()) }",
    "async fn returns_never() -> ! { loop {} }",
];

/// Structs of every shape `#[managed_resource]` meets, with `#[close(...)]` field attributes
/// right and wrong, and the other items it refuses.
const STRUCTS: &[&str] = &[
    "struct Client { socket: Socket, #[close(timeout = \"5s\")] pool: Pool, #[close(skip = \"plain data\")] retries: u32, #[close(with = close_writer)] writer: Writer }",
    "pub struct Tuple(#[close(skip = \"x\")] u32, Socket);",
    "struct Unit;",
    "struct Empty {}",
    "#[derive(Debug)] struct Generic<'a, T: Close, const N: usize> where T: Send { inner: &'a T, items: [T; N] }",
    "struct Raw { r#type: Socket, #[close(timeout = \"1ms\", with = Self::close_it)] r#fn: Pool }",
    "struct Many { #[close(skip)] a: u32, #[close] b: u32, #[close = \"x\"] c: u32, #[close(skip = \"\", timeout = \"0s\", with = x)] d: u32, #[close(timeout = \"5s\")] #[close(timeout = \"6s\")] e: u32 }",
    "struct Nested { #[close(timeout = \"99999999999999999999s\")] a: A, #[close(with = |x| x)] b: B, #[close(a::b = 1)] c: C }",
    "enum NotAStruct { A, B }",
    "union U { a: u32 }",
];

/// Other items, and nothing at all.
const OTHERS: &[&str] = &[
    "impl Foo {}",
    "mod m {}",
    "type T = u32;",
    "",
    "static X: u32 = 0;",
];

/// A struct whose fields carry `#[close(...)]` attributes built like arguments, so every field
/// key and value goes through the field parser.
fn resource_struct(rng: &mut Rng, field_keys: &[&str]) -> TokenStream {
    let named = rng.chance(70);
    let mut body = TokenStream::new();
    for _ in 0..rng.below(4) {
        for _ in 0..rng.below(3) {
            let args = structured_args(rng, field_keys, false);
            body.extend(match rng.below(10) {
                0 => quote!(#[close = #args]),
                1 => quote!(#[close]),
                2 => quote!(#[lc::close(#args)]),
                _ => quote!(#[close(#args)]),
            });
        }
        let ty = TokenStream::from_str(rng.pick(&[
            "Socket",
            "u32",
            "&'a str",
            "Vec<Pool>",
            "<T as Trait>::Assoc",
            "dyn Close",
            "fn()",
            "[u8; 4]",
        ]))
        .unwrap_or_default();
        if named {
            let name = TokenStream::from_str(rng.pick(&["socket", "pool", "r#type", "été", "_"]))
                .unwrap_or_default();
            body.extend(quote!(#name: #ty,));
        } else {
            body.extend(quote!(#ty,));
        }
    }
    if named {
        quote!(struct Resource { #body })
    } else {
        quote!(struct Resource(#body);)
    }
}

pub(super) fn template(rng: &mut Rng, kind: ItemKind) -> TokenStream {
    let own = match kind {
        ItemKind::Fn => FNS,
        ItemKind::Struct => STRUCTS,
    };
    let text = match rng.below(20) {
        0..=14 => rng.pick(own),
        15 | 16 => rng.pick(FNS),
        17 | 18 => rng.pick(STRUCTS),
        _ => rng.pick(OTHERS),
    };
    TokenStream::from_str(text).unwrap_or_default()
}

/// An item for an attribute that goes on `kind`: a real one as written, a real one mutated a
/// few times, or random tokens.
pub(super) fn item(rng: &mut Rng, kind: ItemKind, field_keys: &[&str]) -> TokenStream {
    if kind == ItemKind::Struct && rng.chance(30) {
        let item = resource_struct(rng, field_keys);
        return if rng.chance(30) {
            mutate::mutate_times(item, rng, 1)
        } else {
            item
        };
    }
    match rng.below(20) {
        0..=4 => template(rng, kind),
        5..=17 => {
            let mutations = 1 + rng.below(4);
            mutate::mutate_times(template(rng, kind), rng, mutations)
        }
        _ => random_stream(rng, 0, 12),
    }
}
