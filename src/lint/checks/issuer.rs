//! `issuer-certificate` and `issuer-key-algorithm`: the cert-manager Certificate whose Secret
//! the control plane reads its identity issuer from (`linkerd-identity-issuer` in the control
//! plane namespace) must be a CA, list the usages Linkerd's documentation gives when it lists
//! any, have the common name `identity.linkerd.<trust domain>`, renew before it expires
//! (`renewBefore` shorter than `duration`), and name an issuer that exists (in the plan or the
//! cluster); its key should be ECDSA P-256.

use std::time::Duration;

use serde_json::Value as Json;

use crate::lint::Finding;
use crate::lint::context::{Context, Obj};
use crate::lint::linkerd::ISSUER_SECRET;
use crate::lint::path::{self, Seg};
use crate::model::lint_checks::CheckId;

/// The usages Linkerd's cert-manager guide gives the issuer certificate.
const USAGES: [&str; 4] = ["cert sign", "crl sign", "server auth", "client auth"];
/// cert-manager's default `duration`.
const DEFAULT_DURATION: Duration = Duration::from_secs(2160 * 3600);

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let cp_namespace = ctx.control_plane.as_ref().map(|cp| cp.namespace.as_str());
    for obj in &ctx.objects {
        if obj.kind() != "Certificate" || obj.group() != "cert-manager.io" {
            continue;
        }
        let spec = obj.body().get("spec").cloned().unwrap_or(Json::Null);
        if spec.get("secretName").and_then(Json::as_str) != Some(ISSUER_SECRET) {
            continue;
        }
        if let Some(ns) = cp_namespace
            && obj.namespace() != Some(ns)
        {
            continue;
        }
        check_issuer(ctx, obj, &spec, out);
    }
}

fn field(text: &str) -> Vec<Seg> {
    path::parse(text)
}

fn check_issuer(ctx: &Context<'_>, obj: &Obj<'_>, spec: &Json, out: &mut Vec<Finding>) {
    let id = CheckId::IssuerCertificate;
    let who = format!(
        "Certificate {}/{} (the identity issuer, Secret {ISSUER_SECRET})",
        obj.namespace().unwrap_or_default(),
        obj.name()
    );
    if spec.get("isCA").and_then(Json::as_bool) != Some(true) {
        out.push(ctx.at_object(
            id,
            obj,
            Some(&field("spec.isCA")),
            format!("{who} is not a CA (spec.isCA is not true)"),
            "set `isCA: true`: the issuer signs the proxies' certificates".to_string(),
        ));
    }
    if let Some(usages) = spec.get("usages").and_then(Json::as_array) {
        let listed: Vec<&str> = usages.iter().filter_map(Json::as_str).collect();
        let missing: Vec<&str> = USAGES
            .iter()
            .copied()
            .filter(|u| !listed.contains(u))
            .collect();
        if !missing.is_empty() {
            out.push(ctx.at_object(
                id,
                obj,
                Some(&field("spec.usages")),
                format!("{who} lacks the usages {}", missing.join(", ")),
                format!("list every usage Linkerd needs: {}", USAGES.join(", ")),
            ));
        }
    }
    let trust_domain = ctx
        .control_plane
        .as_ref()
        .map(|cp| cp.settings.trust_domain.clone())
        .unwrap_or_else(|| "cluster.local".to_string());
    let wanted = format!("identity.linkerd.{trust_domain}");
    match spec.get("commonName").and_then(Json::as_str) {
        Some(cn) if cn == wanted => {}
        Some(cn) if obj.is_unknown("/spec/commonName") || cn.contains("${") => {}
        Some(cn) => out.push(ctx.at_object(
            id,
            obj,
            Some(&field("spec.commonName")),
            format!(
                "{who} has the common name `{cn}`; the control plane's trust domain is \
                 {trust_domain}, so its identity controller expects `{wanted}`"
            ),
            format!("set `commonName: {wanted}` (and `dnsNames: [{wanted}]`)"),
        )),
        None => out.push(ctx.at_object(
            id,
            obj,
            Some(&field("spec")),
            format!("{who} has no common name; Linkerd expects `{wanted}`"),
            format!("set `commonName: {wanted}` (and `dnsNames: [{wanted}]`)"),
        )),
    }
    let duration = spec
        .get("duration")
        .and_then(Json::as_str)
        .map(parse_go_duration);
    let renew_before = spec
        .get("renewBefore")
        .and_then(Json::as_str)
        .map(parse_go_duration);
    if let Some(Some(renew_before)) = renew_before {
        let duration = duration.flatten().unwrap_or(DEFAULT_DURATION);
        if renew_before >= duration {
            out.push(
                ctx.at_object(
                    id,
                    obj,
                    Some(&field("spec.renewBefore")),
                    format!(
                        "{who} renews {} before expiry but is valid for only {}: cert-manager \
                     would renew it continuously",
                        go_text(renew_before),
                        go_text(duration)
                    ),
                    "make renewBefore shorter than duration (Linkerd's guide: duration 48h, \
                 renewBefore 25h)"
                        .to_string(),
                ),
            );
        }
    }
    check_issuer_ref(ctx, obj, spec, &who, out);

    let algorithm = spec
        .pointer("/privateKey/algorithm")
        .and_then(Json::as_str)
        .unwrap_or("RSA");
    let size = spec.pointer("/privateKey/size").and_then(Json::as_i64);
    let p256 = algorithm.eq_ignore_ascii_case("ECDSA") && matches!(size, None | Some(256));
    if !p256 {
        let what = match size {
            Some(s) => format!("{algorithm} {s}"),
            None if spec.pointer("/privateKey/algorithm").is_none() => {
                "RSA (cert-manager's default)".to_string()
            }
            None => algorithm.to_string(),
        };
        out.push(ctx.at_object(
            CheckId::IssuerKeyAlgorithm,
            obj,
            Some(&field("spec.privateKey")),
            format!("{who}: its private key is {what}, not ECDSA P-256"),
            "set `privateKey: { algorithm: ECDSA, size: 256 }`".to_string(),
        ));
    }
}

fn check_issuer_ref(
    ctx: &Context<'_>,
    obj: &Obj<'_>,
    spec: &Json,
    who: &str,
    out: &mut Vec<Finding>,
) {
    let text = |p: &str| spec.pointer(p).and_then(Json::as_str);
    let Some(name) = text("/issuerRef/name") else {
        out.push(ctx.at_object(
            CheckId::IssuerCertificate,
            obj,
            Some(&field("spec.issuerRef")),
            format!("{who} names no issuer"),
            "set `issuerRef: { name: ..., kind: ClusterIssuer }`".to_string(),
        ));
        return;
    };
    let kind = text("/issuerRef/kind").unwrap_or("Issuer");
    let group = text("/issuerRef/group").unwrap_or("cert-manager.io");
    if group != "cert-manager.io" || !matches!(kind, "Issuer" | "ClusterIssuer") {
        return;
    }
    let namespace = if kind == "Issuer" {
        obj.namespace().unwrap_or_default()
    } else {
        ""
    };
    let in_plan = ctx.objects.iter().any(|o| {
        o.group() == "cert-manager.io"
            && o.kind() == kind
            && o.name() == name
            && o.namespace().unwrap_or_default() == namespace
    });
    if in_plan {
        return;
    }
    let shown = if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    };
    match ctx.input.cluster {
        None => ctx.note(format!(
            "{}: `{}` did not check that {shown} exists: the plan does not create it and the \
             cluster was not read (--offline)",
            obj.node.address,
            CheckId::IssuerCertificate
        )),
        Some(cluster) => {
            let exists = cluster.issuers.as_ref().is_some_and(|set| {
                set.contains(&(kind.to_string(), namespace.to_string(), name.to_string()))
            });
            if !exists {
                out.push(ctx.at_object(
                    CheckId::IssuerCertificate,
                    obj,
                    Some(&field("spec.issuerRef.name")),
                    format!(
                        "{who} is issued by {shown}, which neither the plan nor the cluster has"
                    ),
                    format!(
                        "create {shown} in the plan (and depend on it), or name an existing issuer"
                    ),
                ));
            }
        }
    }
}

/// A Go duration (`48h`, `1h30m`, `2160h0m0s`, `1.5h`, `90s`, `250ms`); None when malformed.
pub(super) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// `48h`, `25h30m`, `90s`.
pub(super) fn go_text(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(parse_go_duration("48h"), Some(h(48)));
        assert_eq!(parse_go_duration("2160h0m0s"), Some(h(2160)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("2d"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(go_text(Duration::from_secs(25 * 3600 + 1800)), "25h30m");
        assert_eq!(go_text(Duration::from_secs(90)), "1m30s");
    }
}
