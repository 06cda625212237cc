//! Compile-pass and compile-fail cases of the lifecycle macros.
//!
//! Every compile error the macros promise has a case in `fail/<macro>/` whose `.stderr` shows it
//! under the right tokens. After changing a message on purpose, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p lifecycle-ui-tests --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/background/*.rs");
    t.compile_fail("fail/main/*.rs");
    t.compile_fail("fail/managed_resource/*.rs");
    t.compile_fail("fail/test/*.rs");
    t.compile_fail("fail/timeout/*.rs");
}
