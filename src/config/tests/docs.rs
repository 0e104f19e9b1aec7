//! docs/CONFIG.md names every key the config accepts, in its section
//! (the same check as docs/tools/config-keys, run by `cargo test`).

use crate::config::keys::fields;
use crate::config::raw::*;

const DOC: &str = include_str!("../../../docs/CONFIG.md");

/// The heading level of a Markdown heading line (`## x`), if it is one.
fn level(line: &str) -> Option<usize> {
    let n = line.chars().take_while(|c| *c == '#').count();
    (n > 0 && line[n..].starts_with(' ')).then_some(n)
}

/// The text under the heading containing `heading`, up to the next heading
/// of the same or a higher level (lines in fenced code are never headings).
fn section(heading: &str) -> Option<String> {
    let mut fenced = false;
    let lines: Vec<(bool, &str)> = DOC
        .lines()
        .map(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
            }
            (fenced, l)
        })
        .collect();
    let is_heading = |(f, l): &(bool, &str)| if *f { None } else { level(l) };
    let start = lines
        .iter()
        .position(|x| is_heading(x).is_some() && x.1.contains(heading))?;
    let top = is_heading(&lines[start])?;
    let body = lines[start + 1..]
        .iter()
        .take_while(|x| is_heading(x).is_none_or(|n| n > top))
        .map(|x| x.1);
    Some(body.collect::<Vec<_>>().join("\n"))
}

/// `key` as a whole word inside a `code span` of `text`.
fn in_code_span(text: &str, key: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.split('`')
        .skip(1)
        .step_by(2)
        .any(|span| span.split(|c: char| !word(c)).any(|w| w == key))
}

#[test]
fn every_key_is_documented_in_its_section() {
    let sections: [(&[&str], &str); 19] = [
        (fields::<RawLogging>(), "`[logging]`"),
        (fields::<RawApi>(), "`[api]`"),
        (fields::<RawBasicAuth>(), "`[api]`"),
        (fields::<RawCertPaths>(), "`[api]`"),
        (fields::<RawMetrics>(), "`[metrics]`"),
        (fields::<RawProfiler>(), "`[profiler]`"),
        (fields::<RawDefaults>(), "`[defaults]`"),
        (fields::<RawAcme>(), "`[acme]`"),
        (fields::<RawServer>(), "`[servers.NAME]`"),
        (fields::<RawAccess>(), "`[servers.NAME.access]`"),
        (
            fields::<RawProxyProtocol>(),
            "`[servers.NAME.proxy_protocol]`",
        ),
        (fields::<RawSni>(), "`[servers.NAME.sni]`"),
        (fields::<RawTls>(), "`[servers.NAME.tls]`"),
        (fields::<RawBackendsTls>(), "`[servers.NAME.backends_tls]`"),
        (fields::<RawUdp>(), "`[servers.NAME.udp]`"),
        (fields::<RawDiscovery>(), "`[servers.NAME.discovery]`"),
        (fields::<RawHealthcheck>(), "`[servers.NAME.healthcheck]`"),
        (fields::<RawHealthd>(), "`[healthd]`"),
        (fields::<RawHealthdCheck>(), "`[healthd]`"),
    ];
    let mut missing = Vec::new();
    for (keys, heading) in sections {
        let Some(text) = section(heading) else {
            missing.push(format!("no section {heading}"));
            continue;
        };
        assert!(!keys.is_empty(), "no fields read for {heading}");
        for key in keys {
            // A table of its own (`[servers.NAME.tls]`) has its own section.
            let table = format!("`{}.{key}]`", heading.trim_end_matches("]`"));
            if !in_code_span(&text, key) && !DOC.contains(&table) {
                missing.push(format!("{heading} {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented in docs/CONFIG.md: {missing:#?}"
    );
}
