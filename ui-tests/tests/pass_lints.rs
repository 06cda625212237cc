//! The pass cases again, as modules of one test crate, so that `cargo clippy --all-targets`
//! lints the code the macros generate in a user's crate (trybuild only runs rustc on them).
//!
//! Each case carries its own `#[test]`: the background programs run and must stop cleanly; the
//! `#[main]` programs are only type-checked here (trybuild runs them). The modules are `pub` so
//! that `unreachable_pub`, denied inside them, judges them as it would a binary's root.

#[path = "../pass/background_forms.rs"]
pub mod background_forms;

#[path = "../pass/crate_rename.rs"]
pub mod crate_rename;

#[path = "../pass/shutdown_import.rs"]
pub mod shutdown_import;

#[path = "../pass/main_all_keys.rs"]
pub mod main_all_keys;

#[path = "../pass/main_result.rs"]
pub mod main_result;

#[path = "../pass/main_default.rs"]
pub mod main_default;

#[path = "../pass/main_not_send.rs"]
pub mod main_not_send;

#[path = "../pass/blocking_and_foreign_types.rs"]
pub mod blocking_and_foreign_types;

#[path = "../pass/managed_resource_forms.rs"]
pub mod managed_resource_forms;

#[path = "../pass/managed_resource_report.rs"]
pub mod managed_resource_report;

#[path = "../pass/timeout_forms.rs"]
pub mod timeout_forms;

#[path = "../pass/test_forms.rs"]
pub mod test_forms;

#[path = "../pass/crate_rename_imports.rs"]
pub mod crate_rename_imports;

#[path = "../pass/inner_attributes.rs"]
pub mod inner_attributes;
