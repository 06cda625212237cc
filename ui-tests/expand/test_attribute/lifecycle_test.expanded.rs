//! `#[lifecycle_runtime::test]`, expanded with `--tests` so the test is kept.
extern crate test;
#[rustc_test_marker = "stops_cleanly"]
#[doc(hidden)]
pub const stops_cleanly: test::TestDescAndFn = test::TestDescAndFn {
    desc: test::TestDesc {
        name: test::StaticTestName("stops_cleanly"),
        ignore: false,
        ignore_message: ::core::option::Option::None,
        source_file: "ui-tests/expand/test_attribute/lifecycle_test.rs",
        start_line: 4usize,
        start_col: 10usize,
        end_line: 4usize,
        end_col: 23usize,
        compile_fail: false,
        no_run: false,
        should_panic: test::ShouldPanic::No,
        test_type: test::TestType::Unknown,
    },
    testfn: test::StaticTestFn(
        #[coverage(off)]
        || test::assert_test_result(stops_cleanly()),
    ),
};
fn stops_cleanly() {
    ::lifecycle_runtime::__private::run_test::<
        (),
        _,
    >(
        ::lifecycle_runtime::__private::TestSpec {
            name: "stops_cleanly",
            flavor: ::lifecycle_runtime::__private::Flavor::MultiThread,
            worker_threads: ::core::option::Option::Some(2),
            start_paused: false,
            shutdown_timeout: ::core::option::Option::Some(
                ::lifecycle_runtime::__private::Duration::from_secs(1),
            ),
        },
        async move {
            let task = lifecycle_runtime::spawn("short", async {});
            match (&task.await, &Ok(())) {
                (left_val, right_val) => {
                    if !(*left_val == *right_val) {
                        let kind = ::core::panicking::AssertKind::Eq;
                        ::core::panicking::assert_failed(
                            kind,
                            &*left_val,
                            &*right_val,
                            ::core::option::Option::None,
                        );
                    }
                }
            };
        },
    )
}
#[allow(dead_code)]
fn main() {}
#[rustc_main]
#[coverage(off)]
#[doc(hidden)]
pub fn main() -> () {
    extern crate test;
    test::test_main_static(&[&stops_cleanly])
}
