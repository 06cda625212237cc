//! FAULTS.md is the fault matrix: every row names the test that injects the fault. This keeps
//! the two together: at least 40 rows, each naming a test that exists, in the file the row
//! says, and that records the fault's measured time (the table's "measured" column comes from
//! those records).

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// One row of the matrix: its number, the test's file and function, the measured column.
#[derive(Debug)]
struct Row {
    number: usize,
    file: String,
    test: String,
    measured: String,
}

fn rows(matrix: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for line in matrix.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| n | fault | `file::test` | promised | exit | measured |`: 6 cells between 7 bars.
        if cells.len() != 8 {
            continue;
        }
        let Ok(number) = cells[1].parse::<usize>() else {
            continue;
        };
        let test_cell = cells[3].trim_matches('`');
        let (file, test) = test_cell
            .split_once("::")
            .unwrap_or_else(|| panic!("row {number}: the test cell is not `file::test`: {line}"));
        rows.push(Row {
            number,
            file: file.to_owned(),
            test: test.to_owned(),
            measured: cells[6].to_owned(),
        });
    }
    rows
}

/// The body of `fn name(` in `source`: from its line to the next test attribute.
fn body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("fn {name}("))?;
    let rest = &source[start..];
    let end = rest[1..]
        .find("\n#[")
        .map_or(rest.len(), |offset| offset + 1);
    Some(&rest[..end])
}

/// The functions of `source` that record a fault's time themselves (a helper such as
/// `assert_within` in faults.rs): their whole body, braces matched, calls `record_fault_time(`.
fn recording_helpers(source: &str) -> Vec<&str> {
    let mut helpers = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("fn ") {
        let after = &rest[at + 3..];
        rest = after;
        let name_end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_end];
        if name.is_empty() || !after[name_end..].starts_with('(') {
            continue;
        }
        let Some(open) = after.find('{') else {
            break;
        };
        let mut depth = 0usize;
        let mut end = None;
        for (offset, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + offset);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            break;
        };
        if after[open..end].contains("record_fault_time(") {
            helpers.push(name);
        }
    }
    helpers
}

/// Whether `body` calls `function(` (not merely a longer name ending in it).
fn calls(body: &str, function: &str) -> bool {
    let call = format!("{function}(");
    body.match_indices(&call).any(|(at, _)| {
        !body[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !body[..at].ends_with("fn ")
    })
}

/// Whether the test's body records its time: itself, or through a helper of its file that does.
fn records(source: &str, body: &str) -> bool {
    body.contains("record_fault_time(")
        || recording_helpers(source)
            .iter()
            .any(|helper| calls(body, helper))
}

#[test]
fn every_row_of_faults_md_names_a_test_that_exists_and_records_its_time() {
    let root = workspace();
    let matrix = std::fs::read_to_string(root.join("FAULTS.md")).expect("read FAULTS.md");
    let rows = rows(&matrix);
    assert!(
        rows.len() >= 40,
        "FAULTS.md lists {} faults; the matrix promises at least 40",
        rows.len()
    );
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.number, index + 1, "rows are numbered in order: {row:?}");
        let path = ["tests/tests", "examples/tests"]
            .iter()
            .map(|dir| root.join(dir).join(format!("{}.rs", row.file)))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("row {}: no test file `{}.rs`", row.number, row.file));
        let source = std::fs::read_to_string(&path).unwrap();
        let body = body(&source, &row.test).unwrap_or_else(|| {
            panic!(
                "row {}: `{}` has no test `{}`",
                row.number,
                path.display(),
                row.test
            )
        });
        assert!(
            records(&source, body),
            "row {}: `{}::{}` does not record its measured time",
            row.number,
            row.file,
            row.test
        );
        assert!(
            !row.measured.is_empty() && row.measured != "—",
            "row {}: no measured time",
            row.number
        );
    }
}

#[test]
fn the_row_parser_reads_what_it_should_and_skips_the_rest() {
    let sample = "\
| # | Fault | Test | Promised | Exit | Measured |
|---|---|---|---|---|---|
| 1 | a close blocks | `faults::a_close_blocks` | cut at 300 ms | 1 | 0.31 s |
not a row
| x | header-like | `a::b` | c | d | e |
";
    let rows = rows(sample);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].file, "faults");
    assert_eq!(rows[0].test, "a_close_blocks");
    assert_eq!(rows[0].measured, "0.31 s");
    let source = "#[test]\nfn one() {\n    record_fault_time(x);\n}\n\n#[test]\nfn two() {}\n";
    assert!(body(source, "one").unwrap().contains("record_fault_time("));
    assert!(!body(source, "two").unwrap().contains("record_fault_time("));
    assert!(body(source, "three").is_none());

    let source = "\
fn assert_within(took: Duration) {
    if took > LIMIT { panic!() }
    lifecycle_tests::record_fault_time(took);
}

fn not_recording(took: Duration) {
    assert!(took < LIMIT);
}

#[test]
fn through_the_helper() {
    assert_within(took);
}

#[test]
fn through_another() {
    not_recording(took);
    my_assert_within(took);
}
";
    assert_eq!(recording_helpers(source), ["assert_within"]);
    assert!(records(source, body(source, "through_the_helper").unwrap()));
    assert!(!records(source, body(source, "through_another").unwrap()));
    // The helper's own definition is no call.
    assert!(!calls(
        "fn assert_within(took: Duration) {}",
        "assert_within"
    ));
}
