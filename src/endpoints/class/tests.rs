//! The class vocabulary: every class the code produces parses back to itself; patterns are
//! parsed, not listed; anything else is refused with a reason.

use super::*;

fn parse(text: &str) -> Result<ErrorClass, ClassError> {
    text.parse()
}

#[test]
fn every_named_class_is_accepted_and_prints_as_itself() {
    assert!(NAMED.len() >= 40, "only {} named classes", NAMED.len());
    for name in NAMED {
        let class = parse(name).unwrap_or_else(|e| panic!("`{name}` refused: {e}"));
        assert_eq!(class, ErrorClass::Named(name));
        assert_eq!(class.to_string(), *name);
    }
    let mut unique = NAMED.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), NAMED.len(), "a class is declared twice");
}

#[test]
fn numbered_classes_are_parsed_from_their_pattern() {
    for (text, class) in [
        ("http_404", ErrorClass::Status(Protocol::Http, 404)),
        ("http_100", ErrorClass::Status(Protocol::Http, 100)),
        ("http_599", ErrorClass::Status(Protocol::Http, 599)),
        ("http_4xx", ErrorClass::Family(Protocol::Http, 4)),
        ("http_1xx", ErrorClass::Family(Protocol::Http, 1)),
        ("smtp_451", ErrorClass::Status(Protocol::Smtp, 451)),
        ("smtp_5xx", ErrorClass::Family(Protocol::Smtp, 5)),
        ("exit_1", ErrorClass::Exit(1)),
        ("exit_3", ErrorClass::Exit(3)),
        ("exit_255", ErrorClass::Exit(255)),
    ] {
        assert_eq!(parse(text), Ok(class), "{text}");
        assert_eq!(class.to_string(), text);
    }
}

#[test]
fn a_status_belongs_to_its_family_and_nothing_else_has_one() {
    assert_eq!(
        parse("http_404").unwrap().family(),
        Some(ErrorClass::Family(Protocol::Http, 4))
    );
    assert_eq!(
        parse("smtp_451").unwrap().family(),
        Some(ErrorClass::Family(Protocol::Smtp, 4))
    );
    assert_eq!(parse("http_4xx").unwrap().family(), None);
    assert_eq!(parse("exit_2").unwrap().family(), None);
    assert_eq!(parse(TIMEOUT).unwrap().family(), None);
}

#[test]
fn numbers_no_error_can_carry_are_refused_with_the_range() {
    for text in [
        "http_99",
        "http_600",
        "http_6xx",
        "http_0xx",
        "http_40",
        "http_4044",
        "http_+40",
        "http_4x4",
        "http_",
        "smtp_250",
        "smtp_2xx",
        "smtp_600",
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains("status from"), "{text}: {e}");
    }
    for text in [
        "exit_0", "exit_256", "exit_03", "exit_-1", "exit_", "exit_x",
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains("from 1 to 255"), "{text}: {e}");
    }
}

#[test]
fn an_unknown_class_suggests_the_nearest_and_lists_the_valid_ones() {
    for (typo, meant) in [
        ("ouput_invalid", OUTPUT_INVALID),
        ("input_invlid", INPUT_INVALID),
        ("timout", TIMEOUT),
        ("rate_limit", RATE_LIMITED),
        ("Timeout", TIMEOUT),
        ("HTTP_404", "http_404"),
        ("404", "http_404"),
        ("4xx", "http_4xx"),
    ] {
        let e = parse(typo).expect_err(typo).to_string();
        assert!(
            e.starts_with(&format!("unknown error class; did you mean `{meant}`?")),
            "{typo}: {e}"
        );
    }
    let e = parse("zzzz").expect_err("zzzz").to_string();
    assert!(e.starts_with("unknown error class; valid classes: "), "{e}");
    for valid in NAMED {
        assert!(e.contains(&format!("`{valid}`")), "{valid} not listed: {e}");
    }
    assert!(e.contains("`http_404`") && e.contains("`http_4xx`") && e.contains("`exit_3`"));
}

proptest::proptest! {
    /// Whatever the text, parsing never panics, and a class prints as exactly the text it was
    /// parsed from: a `bpmn_errors` key matches the errors whose class reads the same, no others.
    #[test]
    fn a_parsed_class_prints_as_the_text_it_came_from(text in "(http_|smtp_|exit_|)[0-9x+-]{0,4}|\\PC{0,20}") {
        if let Ok(class) = parse(&text) {
            proptest::prop_assert_eq!(class.to_string(), text);
        }
    }
}

/// Every class the code builds from a literal parses: a new `.code("…")` that is not in the
/// vocabulary (and so could never be mapped in `bpmn_errors`) fails here.
#[test]
fn every_class_literal_in_the_source_is_in_the_vocabulary() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("tests.rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
                && !path.components().any(|c| c.as_os_str() == "tests")
            {
                // Tests build errors with made-up classes on purpose.
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut unknown = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        for (i, _) in text.match_indices(".code(\"") {
            let rest = &text[i + ".code(\"".len()..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            if literal.parse::<ErrorClass>().is_err() {
                unknown.push(format!("{}: {literal}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "classes outside the vocabulary: {unknown:#?}"
    );
}
