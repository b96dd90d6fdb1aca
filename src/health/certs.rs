//! Certificates as `check` judges them: PEM bundles parsed with x509-parser, SHA-256
//! fingerprints (as `openssl x509 -fingerprint -sha256` prints them), validity, CA flag and
//! signature verification against an anchor.

use jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use x509_parser::pem::Pem;

/// One certificate, kept as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    /// `AB:CD:...` (SHA-256 of the DER, upper-case hex, colon-separated).
    pub fingerprint: String,
    /// The subject, e.g. `CN=root.linkerd.cluster.local`.
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub is_ca: bool,
}

/// The certificates of a PEM text (other PEM blocks, such as keys, are skipped). Err: why the
/// text holds no readable certificate.
pub fn parse_pem_bundle(text: &str) -> Result<Vec<Cert>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|e| format!("not valid PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        out.push(parse_der(&block.contents)?);
    }
    if out.is_empty() {
        return Err("no PEM certificate in it".to_string());
    }
    Ok(out)
}

/// One DER certificate.
pub fn parse_der(der: &[u8]) -> Result<Cert, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let time = |t: i64| Timestamp::from_second(t).map_err(|e| e.to_string());
    Ok(Cert {
        der: der.to_vec(),
        fingerprint: fingerprint(der),
        subject: cert.subject().to_string(),
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
        is_ca: cert.is_ca(),
    })
}

/// SHA-256 of `der`, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `anchor`'s key signed `cert`.
pub fn is_signed_by(cert: &Cert, anchor: &Cert) -> bool {
    let (Ok((_, c)), Ok((_, a))) = (
        x509_parser::parse_x509_certificate(&cert.der),
        x509_parser::parse_x509_certificate(&anchor.der),
    ) else {
        return false;
    };
    c.verify_signature(Some(a.public_key())).is_ok()
}

/// `3d4h`, `7h59m`, `45m`, `30s` (largest two units).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    let out = if d > 0 {
        if h > 0 {
            format!("{d}d{h}h")
        } else {
            format!("{d}d")
        }
    } else if h > 0 {
        if m > 0 {
            format!("{h}h{m}m")
        } else {
            format!("{h}h")
        }
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    };
    if seconds < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(90061), "1d1h");
        assert_eq!(human_duration(28740), "7h59m");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(-120), "-2m");
    }

    #[test]
    fn garbage_is_not_a_bundle() {
        assert!(parse_pem_bundle("hello").is_err());
        assert!(
            parse_pem_bundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
