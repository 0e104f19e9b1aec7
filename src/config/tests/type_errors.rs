//! Type errors do not hide the rest of the file: each is reported, and the
//! other keys are still checked.

use super::*;

const TWO_SERVERS: &str = "[servers.a]\nbind = \":8080\"\nmax_connections = -1\nbalance = \"wieght\"\n\
    [servers.a.discovery]\nkind = \"static\"\nstatic_list = [\"10.0.0.1:80\", 5]\n\
    [servers.b]\nbind = 5\nclient_idle_timeout = 10\nbalanse = \"x\"\n\
    [servers.b.discovery]\nkind = \"static\"\nstatic_list = [\"10.0.0.1:80\"]\n";

#[test]
fn every_type_error_comes_with_the_other_errors() {
    let e = errors(TWO_SERVERS);
    // The first has a position: it comes from the text.
    assert!(
        e[0].starts_with("servers.a.max_connections: invalid value: integer `-1`")
            && e[0].contains("(line 3"),
        "{e:#?}"
    );
    assert_has(
        &e,
        "servers.a.discovery.static_list[1]: invalid type: integer `5`",
    );
    assert_has(&e, "servers.b.bind: invalid type: integer `5`");
    assert_has(
        &e,
        "servers.b.client_idle_timeout: invalid type: integer `10`",
    );
    // After them: validation of what is left, and unknown keys.
    assert_has(&e, "servers.a.balance: \"wieght\"");
    assert_has(&e, "servers.b.balanse: unknown key");
    // Keys removed after their type error are not also reported missing.
    assert_eq!(e.len(), 6, "{e:#?}");
}

#[test]
fn json_type_errors_are_all_reported_too() {
    let text = r#"{"servers": {"a": {"bind": ":8080", "max_connections": "x",
        "client_idle_timeout": 5, "balanse": "x",
        "discovery": {"kind": "static", "static_list": ["10.0.0.1:80"]}}}}"#;
    let e: Vec<String> = match parse(text, Format::Json) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert_has(&e, "servers.a.max_connections: invalid type: string \"x\"");
    assert_has(
        &e,
        "servers.a.client_idle_timeout: invalid type: integer `5`",
    );
    assert_has(&e, "servers.a.balanse: unknown key");
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn type_errors_are_capped() {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("[servers.s{i}]\nbind = {i}\n"));
    }
    let e = errors(&text);
    let typed = e.iter().filter(|l| l.contains("invalid type")).count();
    assert_eq!(typed, 32, "{e:#?}");
}

#[test]
fn a_syntax_error_still_stops_the_parse() {
    let e = errors("[servers.a]\nbind = 5\nmax_connections = \n");
    assert_eq!(e.len(), 1, "{e:#?}");
}

#[test]
fn a_text_in_the_other_format_says_how_to_read_it() {
    let json = r#"{"servers": {"a": {"bind": ":8080"}}}"#;
    let e = errors(json);
    assert_eq!(
        e.last().map(String::as_str),
        Some("the text reads as JSON: name the file *.json or pass -f json"),
        "{e:#?}"
    );
    let toml = server("");
    let Err(e) = parse(&toml, Format::Json) else {
        panic!("TOML read as JSON passed");
    };
    let e: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        e.last().map(String::as_str),
        Some("the text reads as TOML: pass -f toml")
    );
    // A plain syntax error, and an empty JSON file, get no such hint.
    let e = errors("[servers.a\n");
    assert!(!e.iter().any(|l| l.contains("reads as")), "{e:#?}");
    let Err(e) = parse(" \n", Format::Json) else {
        panic!("an empty JSON text passed");
    };
    assert!(!e.iter().any(|l| l.message.contains("reads as")), "{e:#?}");
}

#[test]
fn a_byte_order_mark_is_skipped_in_both_formats() {
    let json = "\u{feff}{\"servers\": {}}";
    assert!(parse(json, Format::Json).is_ok(), "JSON with a BOM");
    let toml = format!("\u{feff}{}", server(""));
    assert!(parse(&toml, Format::Toml).is_ok(), "TOML with a BOM");
}

#[test]
fn a_number_for_a_duration_says_how_to_write_one() {
    let hint = "expected a string (a duration with a unit, e.g. \"5s\" or \"500ms\")";
    let e = errors(&server("client_idle_timeout = 5\ndrain_timeout = 1.5"));
    assert!(e.iter().all(|l| l.contains(hint)), "{e:#?}");
    assert_eq!(e.len(), 2, "{e:#?}");
    let json = r#"{"servers": {"a": {"bind": ":8080", "backend_idle_timeout": 5,
        "discovery": {"kind": "static", "static_list": ["10.0.0.1:80"]}}}}"#;
    let Err(e) = parse(json, Format::Json) else {
        panic!("a number for a duration passed");
    };
    assert!(e[0].message.contains(hint), "{e:#?}");
    let e = errors(&format!(
        "{}[servers.web.proxy_protocol]\nversion = 2\n",
        server("")
    ));
    assert!(
        e[0].contains("expected a string (write \"1\" or \"2\" in quotes)"),
        "{e:#?}"
    );
    // Other string keys keep serde's message alone.
    let e = errors(&server("balance = 5"));
    assert!(!e.iter().any(|l| l.contains("duration")), "{e:#?}");
}

#[test]
fn a_syntax_error_is_one_line_with_its_position() {
    let text = format!("{}\n{}", server(""), server(""));
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(!e[0].contains('\n'), "{e:#?}");
    assert!(
        e[0].contains("invalid table header: duplicate key `web`") && e[0].contains("(line 8"),
        "{e:#?}"
    );
}
