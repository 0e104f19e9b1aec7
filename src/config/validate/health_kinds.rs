//! Kind-specific health-check keys: probe, exec, script, http, icmp, webhook.

use std::path::PathBuf;

use super::values::{choice, http_url, regex_error};
use super::{Ctx, join};
use crate::config::raw::{RawHealthcheck, StatusItem, StatusSpec};
use crate::config::unescape;
use crate::config::{
    BytesPattern, Check, HttpCheck, Probe, ProbeExpect, ProbeProtocol, Script, WebhookMethod,
};

pub fn check(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck, kind: &str) -> Check {
    match kind {
        "ping" => Check::Ping,
        "probe" => probe(ctx, base, raw).map_or(Check::None, Check::Probe),
        "exec" => exec(ctx, base, raw),
        "script" => script(ctx, base, raw),
        "http" => Check::Http(http(ctx, base, raw)),
        "icmp" => icmp(ctx, base, raw),
        "webhook" => webhook(ctx, base, raw),
        _ => Check::None,
    }
}

fn required<'a>(
    ctx: &mut Ctx,
    base: &str,
    key: &str,
    kind: &str,
    value: Option<&'a String>,
) -> Option<&'a String> {
    let value = value.filter(|v| !v.is_empty());
    if value.is_none() {
        ctx.error(&join(base, key), format!("required for kind \"{kind}\""));
    }
    value
}

fn probe(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> Option<Probe> {
    let at = |key| join(base, key);
    let protocols = [
        ("tcp", ProbeProtocol::Tcp),
        ("udp", ProbeProtocol::Udp),
        ("tls", ProbeProtocol::Tls),
    ];
    let protocol = required(
        ctx,
        base,
        "probe_protocol",
        "probe",
        raw.probe_protocol.as_ref(),
    )
    .map(|p| {
        choice(
            ctx,
            &at("probe_protocol"),
            Some(p),
            &protocols,
            ProbeProtocol::Tcp,
        )
    });
    let send = required(ctx, base, "probe_send", "probe", raw.probe_send.as_ref())
        .and_then(|s| unescaped(ctx, &at("probe_send"), s));
    let recv = required(ctx, base, "probe_recv", "probe", raw.probe_recv.as_ref());
    let regexp = choice(
        ctx,
        &at("probe_strategy"),
        raw.probe_strategy.as_ref(),
        &[("starts_with", false), ("regexp", true)],
        false,
    );
    let recv_len = raw.probe_recv_len.unwrap_or(0) as usize;
    let expect = recv.and_then(|r| expectation(ctx, base, r, regexp, recv_len));
    let expect = expect?;
    let read_len = match &expect {
        ProbeExpect::StartsWith(bytes) => bytes.len(),
        ProbeExpect::Regexp(_) => recv_len,
    };
    if read_len > crate::health::probe::MAX_RECV {
        let max = crate::health::probe::MAX_RECV;
        ctx.error(
            &at("probe_recv_len"),
            format!("at most {max} bytes are read"),
        );
    }
    let tls_insecure = raw.probe_tls_insecure.unwrap_or(false);
    if tls_insecure {
        let what = if protocol == Some(ProbeProtocol::Tls) {
            "backend certificates are not verified"
        } else {
            "ignored unless probe_protocol = \"tls\""
        };
        ctx.warn(&at("probe_tls_insecure"), what);
    }
    Some(Probe {
        protocol: protocol?,
        send: send?,
        expect,
        read_len,
        tls_insecure,
    })
}

fn expectation(
    ctx: &mut Ctx,
    base: &str,
    recv: &str,
    regexp: bool,
    recv_len: usize,
) -> Option<ProbeExpect> {
    let len_path = join(base, "probe_recv_len");
    let recv_path = join(base, "probe_recv");
    if !regexp {
        if recv_len != 0 {
            ctx.error(
                &len_path,
                "must be 0 (unset) with probe_strategy \"starts_with\"",
            );
        }
        return unescaped(ctx, &recv_path, recv).map(ProbeExpect::StartsWith);
    }
    if recv_len == 0 {
        ctx.error(&len_path, "required (> 0) with probe_strategy \"regexp\"");
    }
    match regex::bytes::Regex::new(recv) {
        Ok(re) => Some(ProbeExpect::Regexp(BytesPattern(re))),
        Err(e) => {
            ctx.error(&recv_path, format!("does not compile: {}", regex_error(&e)));
            None
        }
    }
}

fn unescaped(ctx: &mut Ctx, path: &str, text: &str) -> Option<Vec<u8>> {
    unescape(text)
        .map_err(|e| {
            let hint = "Go string escapes; in TOML use a 'single-quoted' string";
            ctx.error(path, format!("{e} ({hint})"));
        })
        .ok()
}

fn exec(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> Check {
    let command = required(ctx, base, "exec_command", "exec", raw.exec_command.as_ref());
    Check::Exec {
        command: command.cloned().unwrap_or_default(),
        positive_output: raw.exec_expected_positive_output.clone(),
        negative_output: raw.exec_expected_negative_output.clone(),
    }
}

fn script(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> Check {
    let path = raw.script_path.as_ref().filter(|p| !p.is_empty());
    let content = raw.script_content.as_ref().filter(|c| !c.is_empty());
    match (path, content) {
        (Some(p), None) => Check::Script(Script::Path(PathBuf::from(p))),
        (None, Some(c)) => Check::Script(Script::Content(c.clone())),
        (Some(_), Some(_)) => {
            ctx.error(
                &join(base, "script_content"),
                "set only one of script_path and script_content",
            );
            Check::None
        }
        (None, None) => {
            ctx.error(base, "kind \"script\" needs script_path or script_content");
            Check::None
        }
    }
}

fn http(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> HttpCheck {
    let at = |key| join(base, key);
    let path = raw
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        let shown = crate::config::secrets::url_for_logs(&path);
        ctx.error(&at("path"), format!("\"{shown}\" must start with \"/\""));
    }
    let method = raw
        .method
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "GET".into());
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        ctx.error(&at("method"), format!("\"{method}\" is not an HTTP method"));
    }
    let headers = raw.headers.clone().unwrap_or_default();
    for (name, value) in &headers {
        if !is_token(name) || value.contains(['\r', '\n']) {
            ctx.error(&at("headers"), format!("bad header \"{name}\""));
        }
    }
    let expected_status = statuses(raw.expected_status.as_ref()).unwrap_or_else(|e| {
        ctx.error(&at("expected_status"), e);
        Vec::new()
    });
    let tls = raw.tls.unwrap_or(false);
    let insecure = raw.insecure_skip_verify.unwrap_or(false);
    if insecure {
        let what = if tls {
            "backend certificates are not verified"
        } else {
            "ignored unless tls = true"
        };
        ctx.warn(&at("insecure_skip_verify"), what);
    }
    HttpCheck {
        path,
        method: method.to_ascii_uppercase(),
        headers,
        host: raw.host.clone().filter(|h| !h.is_empty()),
        tls,
        insecure_skip_verify: insecure,
        expected_status,
        contains: raw.contains.clone().filter(|c| !c.is_empty()),
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `expected_status` as inclusive ranges; empty = any (a `0` anywhere).
pub fn statuses(spec: Option<&StatusSpec>) -> Result<Vec<(u16, u16)>, String> {
    let items: Vec<&StatusItem> = match spec {
        None => return Ok(vec![(200, 399)]),
        Some(StatusSpec::One(item)) => vec![item],
        Some(StatusSpec::List(items)) => items.iter().collect(),
    };
    if items.is_empty() {
        return Err("empty list (use 0 for any status)".into());
    }
    let mut ranges = Vec::with_capacity(items.len());
    for item in items {
        match status_range(item)? {
            None => return Ok(Vec::new()),
            Some(range) => ranges.push(range),
        }
    }
    Ok(ranges)
}

/// One item: `None` = any status.
fn status_range(item: &StatusItem) -> Result<Option<(u16, u16)>, String> {
    let (lo, hi) = match item {
        StatusItem::Code(0) => return Ok(None),
        StatusItem::Code(n) => (code(&n.to_string())?, code(&n.to_string())?),
        StatusItem::Text(t) if t.trim() == "0" => return Ok(None),
        StatusItem::Text(t) => match t.split_once('-') {
            Some((a, b)) => (code(a.trim())?, code(b.trim())?),
            None => (code(t.trim())?, code(t.trim())?),
        },
    };
    if lo > hi {
        return Err(format!("range {lo}-{hi} is backwards"));
    }
    Ok(Some((lo, hi)))
}

fn code(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(c @ 100..=599) => Ok(c),
        _ => Err(format!("\"{text}\" is not an HTTP status (100-599)")),
    }
}

fn icmp(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> Check {
    let count = raw.icmp_count.unwrap_or(3);
    if !(1..=100).contains(&count) {
        ctx.error(&join(base, "icmp_count"), "must be 1-100");
    }
    Check::Icmp { count }
}

fn webhook(ctx: &mut Ctx, base: &str, raw: &RawHealthcheck) -> Check {
    let url = required(
        ctx,
        base,
        "webhook_url",
        "webhook",
        raw.webhook_url.as_ref(),
    );
    if let Some(Err(e)) = url.map(|u| http_url(u)) {
        ctx.error(&join(base, "webhook_url"), e);
    }
    let methods = [("POST", WebhookMethod::Post), ("GET", WebhookMethod::Get)];
    let method = choice(
        ctx,
        &join(base, "webhook_method"),
        raw.webhook_method.as_ref(),
        &methods,
        WebhookMethod::Post,
    );
    Check::Webhook {
        url: url.cloned().unwrap_or_default(),
        method,
    }
}
