//! The real inputs: every use of our attributes in `ui-tests/pass/` and `ui-tests/fail/`, read
//! at test time, with its arguments and the item it is on (that attribute removed, the others
//! kept).

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::visit::Visit;

use super::Macro;

/// One use of one of our attributes.
pub(super) struct Entry {
    /// The file under `ui-tests/`, for failure messages.
    pub(super) file: String,
    pub(super) attribute: Macro,
    pub(super) args: TokenStream,
    pub(super) item: TokenStream,
    /// From `pass/`: it must expand without errors.
    pub(super) passes: bool,
}

/// Every use in `ui-tests/`, in a stable order.
pub(super) fn load() -> Vec<Entry> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui-tests");
    let mut files = Vec::new();
    collect_rs(&root.join("pass"), &mut files);
    collect_rs(&root.join("fail"), &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no cases found under {}; the macro fuzz tests read the UI test cases",
        root.display()
    );
    let mut entries = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let file = syn::parse_file(&text)
            .unwrap_or_else(|error| panic!("cannot parse {}: {error}", path.display()));
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut finder = Finder {
            file: name.clone(),
            passes: name.starts_with("pass"),
            entries: &mut entries,
        };
        finder.visit_file(&file);
    }
    entries
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// Which of our attributes `path` names: `background`, `managed_resource` and `timeout` under
/// any path; `main` and `test` only through a path (`lifecycle_runtime::test`), since a bare
/// `#[test]` is the standard one.
fn attribute_of(path: &syn::Path) -> Option<Macro> {
    let last = path.segments.last()?.ident.to_string();
    let through_path = path.segments.len() > 1
        && !matches!(
            path.segments[0].ident.to_string().as_str(),
            "tokio" | "std" | "core"
        );
    match last.as_str() {
        "background" => Some(Macro::Background),
        "managed_resource" => Some(Macro::ManagedResource),
        "timeout" => Some(Macro::Timeout),
        "main" if through_path => Some(Macro::Main),
        "test" if through_path => Some(Macro::Test),
        _ => None,
    }
}

struct Finder<'a> {
    file: String,
    passes: bool,
    entries: &'a mut Vec<Entry>,
}

impl Finder<'_> {
    /// An entry for each of our attributes in `attrs`, on `item` without that attribute.
    fn found<T: ToTokens + Clone>(
        &mut self,
        item: &T,
        attrs: fn(&mut T) -> &mut Vec<syn::Attribute>,
    ) {
        let count = attrs(&mut item.clone()).len();
        for index in 0..count {
            let mut copy = item.clone();
            let list = attrs(&mut copy);
            let Some(attribute) = attribute_of(list[index].path()) else {
                continue;
            };
            let args = match &list[index].meta {
                syn::Meta::Path(_) => TokenStream::new(),
                syn::Meta::List(meta) => meta.tokens.clone(),
                // Not something the compiler hands to an attribute macro.
                syn::Meta::NameValue(_) => continue,
            };
            list.remove(index);
            self.entries.push(Entry {
                file: self.file.clone(),
                attribute,
                args,
                item: copy.to_token_stream(),
                passes: self.passes,
            });
        }
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.found(item, |item| &mut item.attrs);
        syn::visit::visit_item_fn(self, item);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.found(item, |item| &mut item.attrs);
        syn::visit::visit_impl_item_fn(self, item);
    }

    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        self.found(item, |item| &mut item.attrs);
        syn::visit::visit_item_struct(self, item);
    }

    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        self.found(item, |item| &mut item.attrs);
        syn::visit::visit_item_enum(self, item);
    }

    fn visit_item_union(&mut self, item: &'ast syn::ItemUnion) {
        self.found(item, |item| &mut item.attrs);
        syn::visit::visit_item_union(self, item);
    }
}
