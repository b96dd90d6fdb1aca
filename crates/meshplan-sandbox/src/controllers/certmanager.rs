//! The simulated cert-manager: pure reconcile functions over objects as the API server stores
//! them (`serde_json::Value`).
//!
//! - [`reconcile_issuer`]: an `Issuer`/`ClusterIssuer` of kind selfSigned is Ready at once; a
//!   `ca` issuer is Ready when its Secret (`spec.ca.secretName`, in the issuer's namespace, or
//!   in [`CLUSTER_RESOURCE_NAMESPACE`] for a ClusterIssuer — see [`issuer_secret_location`])
//!   holds a CA keypair, with cert-manager's reasons and messages otherwise.
//! - [`reconcile_certificate`]: decides whether a `Certificate` needs issuing (no Secret,
//!   missing or broken data, a Secret that no longer matches the spec or the issuer, expiry, or
//!   renewal time reached) and then returns the Secret to write and the status to set; or the
//!   status to set while the issuer is not ready; or, when everything is up to date, the
//!   virtual time of the next renewal.
//! - [`Clock`]: virtual time = `start_virtual + (real - start_real) × scale`, so tests can make
//!   "25 hours" pass in seconds. Nothing here reads the system clock: callers pass the time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::pki::{
    self, CertRequest, KeyAlgorithm, KeyEncoding, KeySpec, PkiError, PrivateKey, Signer, Subject,
};

/// Where ClusterIssuers read their Secrets (cert-manager's `--cluster-resource-namespace`).
pub(crate) const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";
/// cert-manager's API group.
pub(crate) const GROUP: &str = "cert-manager.io";
/// Default `spec.duration` (90 days).
pub(crate) const DEFAULT_DURATION: SignedDuration = SignedDuration::from_hours(2160);
/// The message of a Ready Certificate.
pub(crate) const READY_MESSAGE: &str = "Certificate is up to date and has not expired";

/// Errors of the cert-manager simulation.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub(crate) enum CertManagerError {
    /// A field of the Certificate that cannot be honoured.
    #[error("invalid Certificate {name}: {detail}")]
    #[diagnostic(code(meshplan::sandbox::certmanager::bad_spec))]
    BadSpec {
        /// namespace/name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Issuance failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pki(#[from] PkiError),
    /// A clock with a non-positive scale.
    #[error("clock scale must be a positive finite number, got {0}")]
    #[diagnostic(code(meshplan::sandbox::certmanager::bad_scale))]
    BadScale(f64),
}

type Result<T> = std::result::Result<T, CertManagerError>;

/// Virtual time for the simulated controllers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clock {
    /// Real time at which the clock started.
    pub start_real: Timestamp,
    /// Virtual time at that moment.
    pub start_virtual: Timestamp,
    /// Virtual seconds per real second (1.0 = real time; 3600.0 = an hour per second).
    pub scale: f64,
}

impl Clock {
    /// A clock; `scale` must be positive and finite.
    pub(crate) fn new(start_real: Timestamp, start_virtual: Timestamp, scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(CertManagerError::BadScale(scale));
        }
        Ok(Self {
            start_real,
            start_virtual,
            scale,
        })
    }

    /// The virtual time at real time `real_now`, truncated to whole seconds.
    pub(crate) fn now(&self, real_now: Timestamp) -> Timestamp {
        let elapsed = real_now.duration_since(self.start_real);
        let virt = SignedDuration::try_from_secs_f64(elapsed.as_secs_f64() * self.scale)
            .unwrap_or(SignedDuration::MAX);
        let t = self
            .start_virtual
            .checked_add(virt)
            .unwrap_or(Timestamp::MAX);
        Timestamp::from_second(t.as_second()).unwrap_or(t)
    }

    /// The real time at which virtual time reaches `virtual_at` (to schedule a wake-up).
    pub(crate) fn real_at(&self, virtual_at: Timestamp) -> Timestamp {
        let ahead = virtual_at.duration_since(self.start_virtual);
        let real = SignedDuration::try_from_secs_f64(ahead.as_secs_f64() / self.scale)
            .unwrap_or(SignedDuration::MAX);
        self.start_real.checked_add(real).unwrap_or(Timestamp::MAX)
    }
}

/// RFC 3339 with whole seconds and `Z`, as the API server writes times.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn generation(v: &Value) -> i64 {
    at(v, &["metadata", "generation"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn full_name(v: &Value) -> String {
    format!(
        "{}/{}",
        str_at(v, &["metadata", "namespace"]).unwrap_or(""),
        str_at(v, &["metadata", "name"]).unwrap_or("")
    )
}

/// One status condition as cert-manager writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    /// `Ready`, `Issuing`, ...
    pub type_: String,
    /// `True` / `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human message (omitted when empty).
    pub message: String,
}

impl Condition {
    fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Builds a conditions array, keeping each condition's `lastTransitionTime` from `previous`
/// when its status did not change.
fn conditions_json(
    previous: Option<&Value>,
    conds: &[Condition],
    generation: i64,
    now: Timestamp,
) -> Value {
    let prev: Vec<&Value> = previous
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let list = conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let ltt = prev
                .iter()
                .find(|p| {
                    p.get("type").and_then(Value::as_str) == Some(c.type_.as_str())
                        && p.get("status").and_then(Value::as_str) == Some(status)
                })
                .and_then(|p| p.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| Value::String(rfc3339(now)));
            let mut m = Map::new();
            m.insert("type".into(), json!(c.type_));
            m.insert("status".into(), json!(status));
            m.insert("lastTransitionTime".into(), ltt);
            m.insert("reason".into(), json!(c.reason));
            if !c.message.is_empty() {
                m.insert("message".into(), json!(c.message));
            }
            m.insert("observedGeneration".into(), json!(generation));
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

/// The condition of type `type_` of an object's status: (status True?, reason, message).
pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<(bool, &'a str, &'a str)> {
    at(obj, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|c| {
            (
                c.get("status").and_then(Value::as_str) == Some("True"),
                c.get("reason").and_then(Value::as_str).unwrap_or(""),
                c.get("message").and_then(Value::as_str).unwrap_or(""),
            )
        })
}

/// The Secret a `ca` issuer needs, as (namespace, name): in the issuer's namespace, or in
/// [`CLUSTER_RESOURCE_NAMESPACE`] for a ClusterIssuer. None for other issuer kinds.
pub(crate) fn issuer_secret_location(issuer: &Value) -> Option<(String, String)> {
    let name = str_at(issuer, &["spec", "ca", "secretName"])?;
    let ns = if issuer.get("kind").and_then(Value::as_str) == Some("ClusterIssuer") {
        CLUSTER_RESOURCE_NAMESPACE
    } else {
        str_at(issuer, &["metadata", "namespace"]).unwrap_or("default")
    };
    Some((ns.to_string(), name.to_string()))
}

/// A CA keypair read from a Secret: (certificate PEM, key PEM), or cert-manager's error text.
fn ca_keypair(secret: Option<&Value>, name: &str) -> std::result::Result<(String, String), String> {
    let Some(secret) = secret else {
        return Err(format!("secrets \"{name}\" not found"));
    };
    let cert = secret_data(secret, "tls.crt")
        .ok_or_else(|| format!("no data for \"tls.crt\" in secret '{}'", full_name(secret)))?;
    let key = secret_data(secret, "tls.key")
        .ok_or_else(|| format!("no data for \"tls.key\" in secret '{}'", full_name(secret)))?;
    Ok((cert, key))
}

/// A Secret's `data[key]` decoded (or `stringData[key]`), as text.
pub(crate) fn secret_data(secret: &Value, key: &str) -> Option<String> {
    if let Some(b64) = at(secret, &["data", key]).and_then(Value::as_str) {
        let bytes = STANDARD.decode(b64).ok()?;
        return String::from_utf8(bytes).ok().filter(|s| !s.is_empty());
    }
    at(secret, &["stringData", key])
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The status an issuer should have now, or None when it is already that (apart from
/// timestamps) or the issuer kind is not simulated (acme, vault, ...). `ca_secret` is the
/// Secret at [`issuer_secret_location`], if it exists.
pub(crate) fn reconcile_issuer(
    issuer: &Value,
    ca_secret: Option<&Value>,
    now: Timestamp,
) -> Option<Value> {
    let spec = issuer.get("spec")?;
    let cond = if spec.get("selfSigned").is_some() {
        Condition::new("Ready", true, "IsReady", "")
    } else if spec.get("ca").is_some() {
        let name = str_at(spec, &["ca", "secretName"]).unwrap_or("");
        match ca_keypair(ca_secret, name) {
            Err(e) => Condition::new(
                "Ready",
                false,
                "ErrGetKeyPair",
                format!("Error getting keypair for CA issuer: {e}"),
            ),
            Ok((cert, key)) => match (
                pki::parse_certificate_pem(&cert),
                PrivateKey::from_pem(&key),
            ) {
                (Err(e), _) | (_, Err(e)) => Condition::new(
                    "Ready",
                    false,
                    "ErrGetKeyPair",
                    format!("Error getting keypair for CA issuer: {e}"),
                ),
                (Ok(c), Ok(_)) if !c.is_ca => Condition::new(
                    "Ready",
                    false,
                    "ErrInvalidKeyPair",
                    "Error getting keypair for CA issuer: certificate is not a CA",
                ),
                (Ok(c), Ok(k)) if c.public_key != k.identity() => Condition::new(
                    "Ready",
                    false,
                    "ErrGetKeyPair",
                    "Error getting keypair for CA issuer: error decoding certificate: \
                     private key does not match public key",
                ),
                (Ok(_), Ok(_)) => {
                    Condition::new("Ready", true, "KeyPairVerified", "Signing CA verified")
                }
            },
        }
    } else {
        return None;
    };
    let status = json!({
        "conditions": conditions_json(issuer.get("status"), &[cond], generation(issuer), now)
    });
    (issuer.get("status") != Some(&status)).then_some(status)
}

/// True when the issuer's Ready condition is True.
pub(crate) fn issuer_is_ready(issuer: &Value) -> bool {
    condition(issuer, "Ready").is_some_and(|(s, _, _)| s)
}

/// `spec.issuerRef` of a Certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuerRef {
    /// Issuer name.
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    pub kind: String,
    /// The group as written (empty when unset).
    pub group: String,
    /// Where to find the issuer: the Certificate's namespace for an Issuer, None (cluster
    /// scope) for a ClusterIssuer.
    pub namespace: Option<String>,
}

/// Reads `spec.issuerRef`.
pub(crate) fn issuer_ref(certificate: &Value) -> Option<IssuerRef> {
    let r = at(certificate, &["spec", "issuerRef"])?;
    let kind = r
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .unwrap_or("Issuer")
        .to_string();
    let namespace = (kind != "ClusterIssuer").then(|| {
        str_at(certificate, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_string()
    });
    Some(IssuerRef {
        name: r.get("name").and_then(Value::as_str)?.to_string(),
        group: r
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        kind,
        namespace,
    })
}

/// What a Certificate asks for, parsed from its spec.
#[derive(Debug, Clone)]
pub(crate) struct CertificateSpec {
    /// `spec.secretName`.
    pub secret_name: String,
    /// Names and usages.
    pub common_name: Option<String>,
    /// `spec.dnsNames`.
    pub dns_names: Vec<String>,
    /// `spec.ipAddresses`.
    pub ip_addresses: Vec<String>,
    /// `spec.uris`.
    pub uris: Vec<String>,
    /// `spec.emailAddresses`.
    pub email_addresses: Vec<String>,
    /// `spec.isCA`.
    pub is_ca: bool,
    /// `spec.usages`.
    pub usages: Vec<String>,
    /// `spec.duration` (default 90 days).
    pub duration: SignedDuration,
    /// `spec.renewBefore`.
    pub renew_before: Option<SignedDuration>,
    /// `spec.renewBeforePercentage`.
    pub renew_before_percentage: Option<i64>,
    /// `spec.privateKey.algorithm/size`.
    pub key: KeySpec,
    /// `spec.privateKey.encoding`.
    pub encoding: KeyEncoding,
    /// `spec.privateKey.rotationPolicy` is `Never`.
    pub keep_key: bool,
    /// `spec.subject`.
    pub subject: Subject,
}

/// Parses the spec of a Certificate, with cert-manager's defaults.
pub(crate) fn certificate_spec(cert: &Value) -> Result<CertificateSpec> {
    let bad = |detail: String| CertManagerError::BadSpec {
        name: full_name(cert),
        detail,
    };
    let spec = cert.get("spec").ok_or_else(|| bad("no spec".to_string()))?;
    let secret_name = str_at(spec, &["secretName"])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("spec.secretName is required".to_string()))?
        .to_string();
    let duration = match str_at(spec, &["duration"]) {
        Some(d) => pki::parse_go_duration(d)?,
        None => DEFAULT_DURATION,
    };
    let renew_before = str_at(spec, &["renewBefore"])
        .map(pki::parse_go_duration)
        .transpose()?;
    let algorithm = match str_at(spec, &["privateKey", "algorithm"]) {
        Some(a) => KeyAlgorithm::parse(a)?,
        None => KeyAlgorithm::Rsa,
    };
    let size = match at(spec, &["privateKey", "size"]) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad(format!("spec.privateKey.size: not a size: {v}")))?,
        ),
    };
    let key = KeySpec::new(algorithm, size)?;
    let encoding = match str_at(spec, &["privateKey", "encoding"]) {
        Some(e) => KeyEncoding::parse(e)?,
        None => KeyEncoding::Pkcs1,
    };
    let keep_key = str_at(spec, &["privateKey", "rotationPolicy"]) == Some("Never");
    let subject = Subject {
        organizations: strings_at(spec, &["subject", "organizations"]),
        organizational_units: strings_at(spec, &["subject", "organizationalUnits"]),
        countries: strings_at(spec, &["subject", "countries"]),
        provinces: strings_at(spec, &["subject", "provinces"]),
        localities: strings_at(spec, &["subject", "localities"]),
        street_addresses: strings_at(spec, &["subject", "streetAddresses"]),
        postal_codes: strings_at(spec, &["subject", "postalCodes"]),
        serial_number: str_at(spec, &["subject", "serialNumber"]).map(str::to_string),
    };
    Ok(CertificateSpec {
        secret_name,
        common_name: str_at(spec, &["commonName"])
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        dns_names: strings_at(spec, &["dnsNames"]),
        ip_addresses: strings_at(spec, &["ipAddresses"]),
        uris: strings_at(spec, &["uris"]),
        email_addresses: strings_at(spec, &["emailAddresses"]),
        is_ca: at(spec, &["isCA"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        usages: strings_at(spec, &["usages"]),
        duration,
        renew_before,
        renew_before_percentage: at(spec, &["renewBeforePercentage"]).and_then(Value::as_i64),
        key,
        encoding,
        keep_key,
        subject,
    })
}

/// cert-manager's renewal time: `notAfter - renewBefore`, where renewBefore is
/// `spec.renewBefore` when shorter than the actual validity, else `renewBeforePercentage`
/// of it, else a third of it; truncated to the second.
pub(crate) fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<SignedDuration>,
    renew_before_percentage: Option<i64>,
) -> Timestamp {
    let actual = not_after.duration_since(not_before);
    let before = match (renew_before, renew_before_percentage) {
        (Some(rb), _) if rb.is_positive() && rb < actual => rb,
        (_, Some(p)) if p > 0 && p < 100 => {
            SignedDuration::from_nanos_i128(actual.as_nanos() * i128::from(p) / 100)
        }
        _ => actual / 3,
    };
    let t = not_after.checked_sub(before).unwrap_or(not_before);
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Why a Certificate is (re-)issued: cert-manager's Issuing reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssueReason {
    /// `DoesNotExist`, `MissingData`, `InvalidKeyPair`, `InvalidCertificate`,
    /// `IncorrectIssuer`, `SecretMismatch`, `Expired`, `Renewing`, `ManuallyTriggered`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

fn why(reason: &'static str, message: impl Into<String>) -> IssueReason {
    IssueReason {
        reason,
        message: message.into(),
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Whether the Certificate needs issuing, given its current Secret; None when it is up to date.
pub(crate) fn needs_issuing(
    cert: &Value,
    spec: &CertificateSpec,
    secret: Option<&Value>,
    now: Timestamp,
) -> Option<IssueReason> {
    let Some(secret) = secret else {
        return Some(why(
            "DoesNotExist",
            "Issuing certificate as Secret does not exist",
        ));
    };
    let Some(crt) = secret_data(secret, "tls.crt") else {
        return Some(why(
            "MissingData",
            "Issuing certificate as Secret does not contain a certificate",
        ));
    };
    let Some(key) = secret_data(secret, "tls.key") else {
        return Some(why(
            "MissingData",
            "Issuing certificate as Secret does not contain a private key",
        ));
    };
    let Ok(key) = PrivateKey::from_pem(&key) else {
        return Some(why(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains an invalid private key",
        ));
    };
    let Ok(info) = pki::parse_certificate_pem(&crt) else {
        return Some(why(
            "InvalidCertificate",
            "Issuing certificate as Secret contains an invalid certificate",
        ));
    };
    if info.public_key != key.identity() {
        return Some(why(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains a private key that does not match the certificate",
        ));
    }
    if let Some(r) = issuer_ref(cert) {
        let ann = |k: &str| str_at(secret, &["metadata", "annotations", k]);
        let name_ok = ann("cert-manager.io/issuer-name") == Some(r.name.as_str());
        let kind_ok = ann("cert-manager.io/issuer-kind").unwrap_or("Issuer") == r.kind;
        let group = ann("cert-manager.io/issuer-group").unwrap_or("");
        let group_ok = group == r.group
            || (group.is_empty() || group == GROUP) && (r.group.is_empty() || r.group == GROUP);
        if !(name_ok && kind_ok && group_ok) {
            return Some(why(
                "IncorrectIssuer",
                format!(
                    "Issuing certificate as Secret was previously issued by \"{}.{}/{}\"",
                    ann("cert-manager.io/issuer-kind").unwrap_or("Issuer"),
                    if group.is_empty() { GROUP } else { group },
                    ann("cert-manager.io/issuer-name").unwrap_or("")
                ),
            ));
        }
    }
    let mut differs = Vec::new();
    if info.common_name != spec.common_name {
        differs.push("spec.commonName");
    }
    if sorted(&info.dns_names) != sorted(&spec.dns_names) {
        differs.push("spec.dnsNames");
    }
    let norm_ips = |v: &[String]| {
        let mut out: Vec<String> = v
            .iter()
            .map(|s| {
                s.parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|_| s.clone())
            })
            .collect();
        out.sort();
        out
    };
    if norm_ips(&info.ip_addresses) != norm_ips(&spec.ip_addresses) {
        differs.push("spec.ipAddresses");
    }
    if sorted(&info.uris) != sorted(&spec.uris) {
        differs.push("spec.uris");
    }
    if sorted(&info.email_addresses) != sorted(&spec.email_addresses) {
        differs.push("spec.emailAddresses");
    }
    if info.is_ca != spec.is_ca {
        differs.push("spec.isCA");
    }
    if info.not_after.duration_since(info.not_before) != spec.duration {
        differs.push("spec.duration");
    }
    if key.spec() != spec.key {
        differs.push("spec.privateKey");
    }
    if !differs.is_empty() {
        return Some(why(
            "SecretMismatch",
            format!(
                "Existing issued Secret is not up to date for spec: [{}]",
                differs.join(" ")
            ),
        ));
    }
    if now >= info.not_after {
        return Some(why(
            "Expired",
            format!("Certificate expired on {}", go_time(info.not_after)),
        ));
    }
    let renew_at = renewal_time(
        info.not_before,
        info.not_after,
        spec.renew_before,
        spec.renew_before_percentage,
    );
    if now >= renew_at {
        return Some(why(
            "Renewing",
            format!(
                "Renewing certificate as renewal was scheduled at {}",
                go_time(renew_at)
            ),
        ));
    }
    None
}

/// Go's `time.Time.String()`-like rendering used in cert-manager's messages.
fn go_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

/// Everything [`reconcile_certificate`] needs, fetched by the controller loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertificateInputs<'a> {
    /// The Certificate.
    pub certificate: &'a Value,
    /// The issuer named by `spec.issuerRef` (see [`issuer_ref`]), if it exists.
    pub issuer: Option<&'a Value>,
    /// For a `ca` issuer: the Secret at [`issuer_secret_location`], if it exists.
    pub ca_secret: Option<&'a Value>,
    /// The Certificate's Secret (`spec.secretName` in its namespace), if it exists.
    pub secret: Option<&'a Value>,
    /// Virtual now (see [`Clock`]).
    pub now: Timestamp,
}

/// What the controller loop must do for a Certificate.
#[derive(Debug, Clone)]
pub(crate) enum CertificateAction {
    /// Up to date: write `status` if Some (it changed), apply `secret_update` if Some
    /// (`spec.secretTemplate` labels or annotations missing from the Secret: cert-manager
    /// updates the metadata without re-issuing), and look again at virtual `renewal_time`.
    UpToDate {
        /// New status, when different from the stored one.
        status: Option<Value>,
        /// The Secret with its metadata brought in line with `spec.secretTemplate`.
        secret_update: Option<Value>,
        /// When to reconcile again.
        renewal_time: Timestamp,
    },
    /// Write (apply) `secret`, then set `status`.
    Issue {
        /// The full Secret to create or update.
        secret: Value,
        /// The Certificate status after issuance.
        status: Value,
        /// Why it was issued.
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "checked by the tests of renewal")
        )]
        reason: IssueReason,
    },
    /// Cannot issue yet (issuer missing or not ready): set `status` if Some, retry when the
    /// issuer or its Secret changes.
    Waiting {
        /// New status, when different from the stored one.
        status: Option<Value>,
        /// Why it needs issuing.
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "checked by the tests of renewal")
        )]
        reason: IssueReason,
    },
}

fn csv(values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            if v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The Secret cert-manager writes for an issuance.
fn build_secret(
    cert: &Value,
    spec: &CertificateSpec,
    iref: &IssuerRef,
    issued: &pki::Issued,
) -> Result<Value> {
    let info = pki::parse_certificate_pem(&issued.tls_crt)?;
    let ns = str_at(cert, &["metadata", "namespace"]).unwrap_or("default");
    let mut annotations = Map::new();
    let mut labels = Map::new();
    if let Some(t) = at(cert, &["spec", "secretTemplate", "annotations"]).and_then(Value::as_object)
    {
        annotations.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(t) = at(cert, &["spec", "secretTemplate", "labels"]).and_then(Value::as_object) {
        labels.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    labels.insert("controller.cert-manager.io/fao".into(), json!("true"));
    let mut put = |k: &str, v: String| {
        annotations.insert(k.to_string(), Value::String(v));
    };
    put(
        "cert-manager.io/certificate-name",
        str_at(cert, &["metadata", "name"])
            .unwrap_or("")
            .to_string(),
    );
    put("cert-manager.io/issuer-name", iref.name.clone());
    put("cert-manager.io/issuer-kind", iref.kind.clone());
    put("cert-manager.io/issuer-group", iref.group.clone());
    put(
        "cert-manager.io/common-name",
        info.common_name.clone().unwrap_or_default(),
    );
    put("cert-manager.io/alt-names", csv(&info.dns_names));
    put("cert-manager.io/ip-sans", csv(&info.ip_addresses));
    put("cert-manager.io/uri-sans", csv(&info.uris));
    if !info.email_addresses.is_empty() {
        put("cert-manager.io/email-sans", csv(&info.email_addresses));
    }
    let s = &spec.subject;
    for (key, values) in [
        ("cert-manager.io/subject-organizations", &s.organizations),
        (
            "cert-manager.io/subject-organizationalunits",
            &s.organizational_units,
        ),
        ("cert-manager.io/subject-countries", &s.countries),
        ("cert-manager.io/subject-provinces", &s.provinces),
        ("cert-manager.io/subject-localities", &s.localities),
        ("cert-manager.io/subject-postalcodes", &s.postal_codes),
        (
            "cert-manager.io/subject-streetaddresses",
            &s.street_addresses,
        ),
    ] {
        if !values.is_empty() {
            put(key, csv(values));
        }
    }
    if let Some(sn) = s.serial_number.as_ref().filter(|s| !s.is_empty()) {
        put("cert-manager.io/subject-serialnumber", sn.clone());
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": spec.secret_name,
            "namespace": ns,
            "annotations": Value::Object(annotations),
            "labels": Value::Object(labels),
        },
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": STANDARD.encode(&issued.ca_crt),
            "tls.crt": STANDARD.encode(&issued.tls_crt),
            "tls.key": STANDARD.encode(&issued.tls_key),
        }
    }))
}

/// The Secret with `spec.secretTemplate` labels/annotations (and cert-manager's own label)
/// applied, when any is missing or different; None when the metadata already matches.
fn template_drift(cert: &Value, secret: &Value) -> Option<Value> {
    let mut updated = secret.clone();
    let mut drift = false;
    let mut wanted: Vec<(&str, Map<String, Value>)> = vec![
        (
            "labels",
            at(cert, &["spec", "secretTemplate", "labels"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ),
        (
            "annotations",
            at(cert, &["spec", "secretTemplate", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ),
    ];
    wanted[0]
        .1
        .insert("controller.cert-manager.io/fao".into(), json!("true"));
    for (field, entries) in wanted {
        for (k, v) in entries {
            if at(secret, &["metadata", field, &k]) != Some(&v) {
                drift = true;
                let meta = updated
                    .as_object_mut()?
                    .entry("metadata")
                    .or_insert_with(|| json!({}));
                let map = meta
                    .as_object_mut()?
                    .entry(field)
                    .or_insert_with(|| json!({}));
                map.as_object_mut()?.insert(k, v);
            }
        }
    }
    drift.then_some(updated)
}

fn revision(cert: &Value) -> i64 {
    at(cert, &["status", "revision"])
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn ready_status(
    cert: &Value,
    not_before: Timestamp,
    not_after: Timestamp,
    renew_at: Timestamp,
    revision: i64,
    now: Timestamp,
) -> Value {
    let conds = [Condition::new("Ready", true, "Ready", READY_MESSAGE)];
    json!({
        "conditions": conditions_json(cert.get("status"), &conds, generation(cert), now),
        "notBefore": rfc3339(not_before),
        "notAfter": rfc3339(not_after),
        "renewalTime": rfc3339(renew_at),
        "revision": revision,
    })
}

fn changed(cert: &Value, status: Value) -> Option<Value> {
    (cert.get("status") != Some(&status)).then_some(status)
}

/// Reconciles one Certificate (see [`CertificateAction`]). Errors are spec errors (bad
/// duration, unsupported key) and signing failures; [`failed_status`] turns one into the
/// status cert-manager would show.
pub(crate) fn reconcile_certificate(input: CertificateInputs<'_>) -> Result<CertificateAction> {
    let cert = input.certificate;
    let now = input.now;
    let spec = certificate_spec(cert)?;
    let iref = issuer_ref(cert).ok_or_else(|| CertManagerError::BadSpec {
        name: full_name(cert),
        detail: "spec.issuerRef.name is required".into(),
    })?;

    let Some(reason) = needs_issuing(cert, &spec, input.secret, now) else {
        // Up to date: report what the Secret holds.
        let crt = input
            .secret
            .and_then(|s| secret_data(s, "tls.crt"))
            .unwrap_or_default();
        let info = pki::parse_certificate_pem(&crt)?;
        let renew_at = renewal_time(
            info.not_before,
            info.not_after,
            spec.renew_before,
            spec.renew_before_percentage,
        );
        let status = ready_status(
            cert,
            info.not_before,
            info.not_after,
            renew_at,
            revision(cert).max(1),
            now,
        );
        return Ok(CertificateAction::UpToDate {
            status: changed(cert, status),
            secret_update: input.secret.and_then(|s| template_drift(cert, s)),
            renewal_time: renew_at,
        });
    };

    let waiting = |detail: Option<String>| {
        let ready_reason = if reason.reason == "Renewing" {
            "Ready"
        } else {
            reason.reason
        };
        let mut ready = Condition::new("Ready", false, ready_reason, reason.message.clone());
        if reason.reason == "Renewing" {
            // A certificate being renewed stays Ready while the new one is pending.
            ready = Condition::new("Ready", true, "Ready", READY_MESSAGE);
        }
        let mut issuing = Condition::new("Issuing", true, reason.reason, reason.message.clone());
        if let Some(d) = detail {
            issuing.message = format!("{} ({d})", reason.message);
        }
        let mut status = cert
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        status.insert(
            "conditions".into(),
            conditions_json(cert.get("status"), &[ready, issuing], generation(cert), now),
        );
        CertificateAction::Waiting {
            status: changed(cert, Value::Object(status)),
            reason: reason.clone(),
        }
    };

    let Some(issuer) = input.issuer else {
        return Ok(waiting(Some(format!(
            "{} \"{}\" not found",
            iref.kind, iref.name
        ))));
    };
    let is_self_signed = at(issuer, &["spec", "selfSigned"]).is_some();
    let is_ca = at(issuer, &["spec", "ca"]).is_some();
    if !(is_self_signed || is_ca) || !issuer_is_ready(issuer) {
        return Ok(waiting(Some(format!(
            "{} \"{}\" is not ready",
            iref.kind, iref.name
        ))));
    }

    // The key: kept from the Secret with rotationPolicy Never when it still matches the spec.
    let existing_key = input
        .secret
        .and_then(|s| secret_data(s, "tls.key"))
        .and_then(|k| PrivateKey::from_pem(&k).ok())
        .filter(|k| k.spec() == spec.key);
    let key = match existing_key {
        Some(k) if spec.keep_key => k,
        _ => pki::generate_key(spec.key)?,
    };
    let request = CertRequest {
        common_name: spec.common_name.clone(),
        dns_names: spec.dns_names.clone(),
        ip_addresses: spec.ip_addresses.clone(),
        uris: spec.uris.clone(),
        email_addresses: spec.email_addresses.clone(),
        is_ca: spec.is_ca,
        usages: spec.usages.clone(),
        duration: spec.duration,
        subject: spec.subject.clone(),
        now,
    };
    let issued = if is_self_signed {
        pki::issue(&request, &key, Signer::SelfSigned, spec.encoding)?
    } else {
        let secret_name = str_at(issuer, &["spec", "ca", "secretName"]).unwrap_or("");
        let (ca_crt, ca_key) = match ca_keypair(input.ca_secret, secret_name) {
            Ok(pair) => pair,
            Err(e) => return Ok(waiting(Some(e))),
        };
        pki::issue(
            &request,
            &key,
            Signer::Ca {
                cert_pem: &ca_crt,
                key_pem: &ca_key,
            },
            spec.encoding,
        )?
    };
    let secret = build_secret(cert, &spec, &iref, &issued)?;
    let renew_at = renewal_time(
        issued.not_before,
        issued.not_after,
        spec.renew_before,
        spec.renew_before_percentage,
    );
    let status = ready_status(
        cert,
        issued.not_before,
        issued.not_after,
        renew_at,
        revision(cert) + 1,
        now,
    );
    Ok(CertificateAction::Issue {
        secret,
        status,
        reason,
    })
}

/// The status of a Certificate whose spec cannot be honoured: Ready False, reason `Failed`.
pub(crate) fn failed_status(cert: &Value, err: &CertManagerError, now: Timestamp) -> Option<Value> {
    let mut status = cert
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let conds = [Condition::new(
        "Ready",
        false,
        "Failed",
        format!("The certificate request has failed to complete and will be retried: {err}"),
    )];
    status.insert(
        "conditions".into(),
        conditions_json(cert.get("status"), &conds, generation(cert), now),
    );
    changed(cert, Value::Object(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const T0: &str = "2026-03-01T12:00:00Z";

    fn self_signed_cluster_issuer() -> Value {
        json!({"apiVersion":"cert-manager.io/v1","kind":"ClusterIssuer",
               "metadata":{"name":"selfsigned","generation":1},"spec":{"selfSigned":{}}})
    }

    fn ca_cluster_issuer(secret: &str) -> Value {
        json!({"apiVersion":"cert-manager.io/v1","kind":"ClusterIssuer",
               "metadata":{"name":"ca","generation":2},"spec":{"ca":{"secretName":secret}}})
    }

    fn certificate(name: &str, ns: &str, issuer: &str, extra: Value) -> Value {
        let mut c = json!({"apiVersion":"cert-manager.io/v1","kind":"Certificate",
            "metadata":{"name":name,"namespace":ns,"generation":1},
            "spec":{"secretName":format!("{name}-tls"),
                    "issuerRef":{"name":issuer,"kind":"ClusterIssuer","group":"cert-manager.io"}}});
        if let (Some(spec), Some(extra)) = (c["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        c
    }

    fn with_status(mut obj: Value, status: Value) -> Value {
        obj["status"] = status;
        obj
    }

    fn der(pem: &str) -> Vec<u8> {
        pki::pem_blocks(pem).unwrap().remove(0).1
    }

    fn issue(input: CertificateInputs<'_>) -> (Value, Value, IssueReason) {
        match reconcile_certificate(input).unwrap() {
            CertificateAction::Issue {
                secret,
                status,
                reason,
            } => (secret, status, reason),
            other => panic!("expected Issue, got {other:?}"),
        }
    }

    #[test]
    fn self_signed_issuer_is_ready_at_once_and_then_stable() {
        let iss = self_signed_cluster_issuer();
        let status = reconcile_issuer(&iss, None, t(T0)).unwrap();
        assert_eq!(
            status,
            json!({"conditions":[{"type":"Ready","status":"True",
                "lastTransitionTime":"2026-03-01T12:00:00Z","reason":"IsReady","observedGeneration":1}]})
        );
        let iss = with_status(iss, status);
        assert!(issuer_is_ready(&iss));
        // Nothing changes later: no rewrite, lastTransitionTime kept.
        assert_eq!(
            reconcile_issuer(&iss, None, t("2026-03-02T00:00:00Z")),
            None
        );
    }

    #[test]
    fn ca_issuer_waits_for_its_secret_with_cert_managers_message() {
        let iss = ca_cluster_issuer("root-ca");
        assert_eq!(
            issuer_secret_location(&iss),
            Some(("cert-manager".to_string(), "root-ca".to_string()))
        );
        let ns_issuer = json!({"kind":"Issuer","metadata":{"name":"i","namespace":"apps"},
                               "spec":{"ca":{"secretName":"s"}}});
        assert_eq!(
            issuer_secret_location(&ns_issuer),
            Some(("apps".to_string(), "s".to_string()))
        );
        let status = reconcile_issuer(&iss, None, t(T0)).unwrap();
        let iss = with_status(iss, status);
        assert_eq!(
            condition(&iss, "Ready"),
            Some((
                false,
                "ErrGetKeyPair",
                "Error getting keypair for CA issuer: secrets \"root-ca\" not found"
            ))
        );
        assert!(!issuer_is_ready(&iss));
        assert_eq!(iss["status"]["conditions"][0]["observedGeneration"], 2);

        // A non-CA keypair is refused.
        let key = pki::generate_key(KeySpec::new(KeyAlgorithm::Ecdsa, None).unwrap()).unwrap();
        let leaf = pki::issue(
            &CertRequest {
                common_name: Some("leaf".into()),
                dns_names: vec![],
                ip_addresses: vec![],
                uris: vec![],
                email_addresses: vec![],
                is_ca: false,
                usages: vec![],
                duration: SignedDuration::from_hours(1),
                subject: Subject::default(),
                now: t(T0),
            },
            &key,
            Signer::SelfSigned,
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        let secret = json!({"metadata":{"name":"root-ca","namespace":"cert-manager"},
            "data":{"tls.crt":STANDARD.encode(&leaf.tls_crt),"tls.key":STANDARD.encode(&leaf.tls_key)}});
        let status = reconcile_issuer(&iss, Some(&secret), t(T0)).unwrap();
        let iss2 = with_status(iss.clone(), status);
        assert_eq!(
            condition(&iss2, "Ready"),
            Some((
                false,
                "ErrInvalidKeyPair",
                "Error getting keypair for CA issuer: certificate is not a CA"
            ))
        );
        // A secret without tls.key.
        let secret = json!({"metadata":{"name":"root-ca","namespace":"cert-manager"},
            "data":{"tls.crt":STANDARD.encode(&leaf.tls_crt)}});
        let status = reconcile_issuer(&iss, Some(&secret), t(T0)).unwrap();
        let (_, reason, msg) = condition(&with_status(iss, status), "Ready")
            .map(|(s, r, m)| (s, r.to_string(), m.to_string()))
            .unwrap();
        assert_eq!(reason, "ErrGetKeyPair");
        assert!(msg.contains("no data for \"tls.key\""), "{msg}");
    }

    /// The acceptance chain: selfSigned ClusterIssuer → CA Certificate → CA ClusterIssuer →
    /// ECDSA leaf CA Certificate (48h, renewBefore 25h) → renewal after 23 virtual hours.
    #[test]
    fn full_chain_issues_renews_and_keeps_ca() {
        let clock = Clock::new(t("2030-01-01T00:00:00Z"), t(T0), 3600.0).unwrap();
        let now0 = clock.now(t("2030-01-01T00:00:00Z"));
        assert_eq!(now0, t(T0));

        // 1. selfSigned issuer.
        let ss = self_signed_cluster_issuer();
        let ss = with_status(ss.clone(), reconcile_issuer(&ss, None, now0).unwrap());

        // 2. The root CA certificate, in the cluster resource namespace.
        let root = certificate(
            "root",
            "cert-manager",
            "selfsigned",
            json!({"isCA":true,"commonName":"meshplan-root","secretName":"root-ca",
                   "privateKey":{"algorithm":"ECDSA","size":256}}),
        );
        // Before the issuer exists: Waiting with the DoesNotExist reason.
        match reconcile_certificate(CertificateInputs {
            certificate: &root,
            issuer: None,
            ca_secret: None,
            secret: None,
            now: now0,
        })
        .unwrap()
        {
            CertificateAction::Waiting { status, reason } => {
                assert_eq!(reason.reason, "DoesNotExist");
                let c = with_status(root.clone(), status.unwrap());
                assert_eq!(
                    condition(&c, "Ready"),
                    Some((
                        false,
                        "DoesNotExist",
                        "Issuing certificate as Secret does not exist"
                    ))
                );
                assert!(condition(&c, "Issuing").unwrap().0);
            }
            other => panic!("{other:?}"),
        }
        let (root_secret, root_status, _) = issue(CertificateInputs {
            certificate: &root,
            issuer: Some(&ss),
            ca_secret: None,
            secret: None,
            now: now0,
        });
        assert_eq!(root_secret["type"], "kubernetes.io/tls");
        assert_eq!(root_secret["metadata"]["name"], "root-ca");
        assert_eq!(root_secret["metadata"]["namespace"], "cert-manager");
        let root_crt = secret_data(&root_secret, "tls.crt").unwrap();
        assert_eq!(secret_data(&root_secret, "ca.crt").unwrap(), root_crt);
        assert!(
            secret_data(&root_secret, "tls.key")
                .unwrap()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        assert_eq!(root_status["revision"], 1);
        // Default 90 days, renewal at 2/3.
        assert_eq!(root_status["notAfter"], "2026-05-30T12:00:00Z");
        assert_eq!(root_status["renewalTime"], "2026-04-30T12:00:00Z");

        // 3. CA issuer reading that secret.
        let ca = ca_cluster_issuer("root-ca");
        let ca = with_status(
            ca.clone(),
            reconcile_issuer(&ca, Some(&root_secret), now0).unwrap(),
        );
        assert_eq!(
            condition(&ca, "Ready"),
            Some((true, "KeyPairVerified", "Signing CA verified"))
        );

        // 4. Leaf: ECDSA, 48h, renewBefore 25h, isCA.
        let leaf = certificate(
            "trust-anchor",
            "linkerd",
            "ca",
            json!({"isCA":true,"commonName":"root.linkerd.cluster.local",
                   "dnsNames":["root.linkerd.cluster.local"],"duration":"48h","renewBefore":"25h",
                   "privateKey":{"algorithm":"ECDSA"},"usages":["cert sign","crl sign","server auth","client auth"],
                   "secretTemplate":{"labels":{"team":"mesh"},"annotations":{"note":"x"}}}),
        );
        let (s1, st1, why1) = issue(CertificateInputs {
            certificate: &leaf,
            issuer: Some(&ca),
            ca_secret: Some(&root_secret),
            secret: None,
            now: now0,
        });
        assert_eq!(why1.reason, "DoesNotExist");
        let md = &s1["metadata"];
        assert_eq!(md["labels"]["controller.cert-manager.io/fao"], "true");
        assert_eq!(md["labels"]["team"], "mesh");
        assert_eq!(md["annotations"]["note"], "x");
        assert_eq!(
            md["annotations"]["cert-manager.io/certificate-name"],
            "trust-anchor"
        );
        assert_eq!(md["annotations"]["cert-manager.io/issuer-name"], "ca");
        assert_eq!(
            md["annotations"]["cert-manager.io/issuer-kind"],
            "ClusterIssuer"
        );
        assert_eq!(
            md["annotations"]["cert-manager.io/issuer-group"],
            "cert-manager.io"
        );
        assert_eq!(
            md["annotations"]["cert-manager.io/common-name"],
            "root.linkerd.cluster.local"
        );
        assert_eq!(
            md["annotations"]["cert-manager.io/alt-names"],
            "root.linkerd.cluster.local"
        );
        assert_eq!(md["annotations"]["cert-manager.io/ip-sans"], "");
        let crt1 = secret_data(&s1, "tls.crt").unwrap();
        assert_eq!(secret_data(&s1, "ca.crt").unwrap(), root_crt);
        let leaf_der = der(&crt1);
        let root_der = der(&root_crt);
        let (_, lx) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, rx) = X509Certificate::from_der(&root_der).unwrap();
        lx.verify_signature(Some(rx.public_key())).unwrap();
        assert!(lx.basic_constraints().unwrap().unwrap().value.ca);
        assert_eq!(st1["notBefore"], "2026-03-01T12:00:00Z");
        assert_eq!(st1["notAfter"], "2026-03-03T12:00:00Z");
        assert_eq!(st1["renewalTime"], "2026-03-02T11:00:00Z"); // notAfter - 25h
        assert_eq!(st1["revision"], 1);
        assert_eq!(
            st1["conditions"][0],
            json!({"type":"Ready","status":"True","lastTransitionTime":"2026-03-01T12:00:00Z",
                   "reason":"Ready","message":READY_MESSAGE,"observedGeneration":1})
        );
        let leaf = with_status(leaf, st1.clone());

        // 5. Up to date before renewal: wake up at renewalTime (23 real seconds later).
        let later = clock.now(t("2030-01-01T00:00:10Z")); // 10 virtual hours
        match reconcile_certificate(CertificateInputs {
            certificate: &leaf,
            issuer: Some(&ca),
            ca_secret: Some(&root_secret),
            secret: Some(&s1),
            now: later,
        })
        .unwrap()
        {
            CertificateAction::UpToDate {
                status,
                secret_update,
                renewal_time,
            } => {
                assert_eq!(status, None);
                assert_eq!(secret_update, None);
                assert_eq!(renewal_time, t("2026-03-02T11:00:00Z"));
                assert_eq!(clock.real_at(renewal_time), t("2030-01-01T00:00:23Z"));
            }
            other => panic!("{other:?}"),
        }

        // 6. After the renewal time: a new certificate, same ca.crt, revision 2.
        let after = clock.now(t("2030-01-01T00:00:24Z"));
        let (s2, st2, why2) = issue(CertificateInputs {
            certificate: &leaf,
            issuer: Some(&ca),
            ca_secret: Some(&root_secret),
            secret: Some(&s1),
            now: after,
        });
        assert_eq!(why2.reason, "Renewing");
        assert_eq!(
            why2.message,
            "Renewing certificate as renewal was scheduled at 2026-03-02 11:00:00 +0000 UTC"
        );
        let crt2 = secret_data(&s2, "tls.crt").unwrap();
        assert_ne!(crt2, crt1);
        assert_eq!(secret_data(&s2, "ca.crt").unwrap(), root_crt);
        assert_eq!(st2["revision"], 2);
        assert_eq!(st2["notBefore"], "2026-03-02T12:00:00Z");
        // Ready stayed True: lastTransitionTime kept.
        assert_eq!(
            st2["conditions"][0]["lastTransitionTime"],
            "2026-03-01T12:00:00Z"
        );
        // Default rotation policy Always: a new key.
        assert_ne!(secret_data(&s2, "tls.key"), secret_data(&s1, "tls.key"));
    }

    #[test]
    fn rotation_policy_never_keeps_the_key() {
        let ss = with_status(
            self_signed_cluster_issuer(),
            json!({"conditions":[{"type":"Ready","status":"True","reason":"IsReady"}]}),
        );
        let c = certificate(
            "k",
            "default",
            "selfsigned",
            json!({"commonName":"k","duration":"2h","privateKey":{"algorithm":"Ed25519","rotationPolicy":"Never"}}),
        );
        let now = t(T0);
        let (s1, st1, _) = issue(CertificateInputs {
            certificate: &c,
            issuer: Some(&ss),
            ca_secret: None,
            secret: None,
            now,
        });
        let c = with_status(c, st1);
        let later = now.checked_add(SignedDuration::from_mins(90)).unwrap();
        let (s2, _, why) = issue(CertificateInputs {
            certificate: &c,
            issuer: Some(&ss),
            ca_secret: None,
            secret: Some(&s1),
            now: later,
        });
        assert_eq!(why.reason, "Renewing");
        assert_eq!(secret_data(&s2, "tls.key"), secret_data(&s1, "tls.key"));
        assert_ne!(secret_data(&s2, "tls.crt"), secret_data(&s1, "tls.crt"));
    }

    #[test]
    fn spec_changes_and_broken_secrets_trigger_reissue() {
        let ss = with_status(
            self_signed_cluster_issuer(),
            json!({"conditions":[{"type":"Ready","status":"True","reason":"IsReady"}]}),
        );
        let c = certificate(
            "web",
            "default",
            "selfsigned",
            json!({"commonName":"web","dnsNames":["web.default.svc"],"privateKey":{"algorithm":"ECDSA"}}),
        );
        let now = t(T0);
        let (s1, st1, _) = issue(CertificateInputs {
            certificate: &c,
            issuer: Some(&ss),
            ca_secret: None,
            secret: None,
            now,
        });
        let spec = certificate_spec(&c).unwrap();
        assert_eq!(needs_issuing(&c, &spec, Some(&s1), now), None);

        // New DNS name and isCA → SecretMismatch naming both fields.
        let mut c2 = with_status(c.clone(), st1);
        c2["spec"]["dnsNames"] = json!(["web.default.svc", "web"]);
        c2["spec"]["isCA"] = json!(true);
        let spec2 = certificate_spec(&c2).unwrap();
        let r = needs_issuing(&c2, &spec2, Some(&s1), now).unwrap();
        assert_eq!(r.reason, "SecretMismatch");
        assert_eq!(
            r.message,
            "Existing issued Secret is not up to date for spec: [spec.dnsNames spec.isCA]"
        );
        // Another issuer → IncorrectIssuer.
        let mut c3 = c.clone();
        c3["spec"]["issuerRef"]["name"] = json!("other");
        let r = needs_issuing(&c3, &spec, Some(&s1), now).unwrap();
        assert_eq!(r.reason, "IncorrectIssuer");
        // Missing key data.
        let mut s_nokey = s1.clone();
        s_nokey["data"].as_object_mut().unwrap().remove("tls.key");
        assert_eq!(
            needs_issuing(&c, &spec, Some(&s_nokey), now)
                .unwrap()
                .reason,
            "MissingData"
        );
        // Key that does not match the certificate.
        let other_key = pki::generate_key(spec.key).unwrap();
        let mut s_badkey = s1.clone();
        s_badkey["data"]["tls.key"] =
            json!(STANDARD.encode(other_key.to_pem(KeyEncoding::Pkcs1).unwrap()));
        assert_eq!(
            needs_issuing(&c, &spec, Some(&s_badkey), now)
                .unwrap()
                .reason,
            "InvalidKeyPair"
        );
        // Algorithm change.
        let mut c4 = c.clone();
        c4["spec"]["privateKey"] = json!({"algorithm":"Ed25519"});
        let spec4 = certificate_spec(&c4).unwrap();
        assert!(
            needs_issuing(&c4, &spec4, Some(&s1), now)
                .unwrap()
                .message
                .contains("spec.privateKey")
        );
        // Expired.
        let far = now
            .checked_add(SignedDuration::from_hours(24 * 91))
            .unwrap();
        assert_eq!(
            needs_issuing(&c, &spec, Some(&s1), far).unwrap().reason,
            "Expired"
        );
    }

    #[test]
    fn waits_for_a_ca_issuer_that_is_not_ready() {
        let ca = ca_cluster_issuer("missing");
        let ca = with_status(ca.clone(), reconcile_issuer(&ca, None, t(T0)).unwrap());
        let c = certificate("x", "default", "ca", json!({"commonName":"x"}));
        match reconcile_certificate(CertificateInputs {
            certificate: &c,
            issuer: Some(&ca),
            ca_secret: None,
            secret: None,
            now: t(T0),
        })
        .unwrap()
        {
            CertificateAction::Waiting { status, reason } => {
                assert_eq!(reason.reason, "DoesNotExist");
                let c = with_status(c, status.unwrap());
                assert!(!condition(&c, "Ready").unwrap().0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_specs_are_typed_errors_with_a_failed_status() {
        let ss = self_signed_cluster_issuer();
        for (extra, want) in [
            (json!({"duration":"two days"}), "invalid duration"),
            (
                json!({"privateKey":{"algorithm":"DSA"}}),
                "unsupported private key algorithm",
            ),
            (
                json!({"privateKey":{"algorithm":"RSA","size":1024}}),
                "unsupported RSA key size 1024",
            ),
        ] {
            let c = certificate("bad", "default", "selfsigned", extra);
            let err = reconcile_certificate(CertificateInputs {
                certificate: &c,
                issuer: Some(&ss),
                ca_secret: None,
                secret: None,
                now: t(T0),
            })
            .unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            let st = failed_status(&c, &err, t(T0)).unwrap();
            assert_eq!(st["conditions"][0]["reason"], "Failed");
        }
    }

    #[test]
    fn renewal_time_follows_cert_manager() {
        let nb = t(T0);
        let na = nb.checked_add(SignedDuration::from_hours(48)).unwrap();
        // Default: a third of the lifetime before expiry.
        assert_eq!(renewal_time(nb, na, None, None), t("2026-03-02T20:00:00Z"));
        assert_eq!(
            renewal_time(nb, na, Some(SignedDuration::from_hours(25)), None),
            t("2026-03-02T11:00:00Z")
        );
        // renewBefore not shorter than the lifetime is ignored.
        assert_eq!(
            renewal_time(nb, na, Some(SignedDuration::from_hours(48)), None),
            t("2026-03-02T20:00:00Z")
        );
        // Percentage.
        assert_eq!(
            renewal_time(nb, na, None, Some(25)),
            t("2026-03-03T00:00:00Z")
        );
        // Truncated to the second.
        let na = nb.checked_add(SignedDuration::from_secs(10)).unwrap();
        assert_eq!(renewal_time(nb, na, None, None), t("2026-03-01T12:00:06Z"));
    }

    #[test]
    fn clock_scales_and_inverts() {
        let c = Clock::new(t("2030-01-01T00:00:00Z"), t(T0), 3600.0).unwrap();
        assert_eq!(c.now(t("2030-01-01T00:00:25Z")), t("2026-03-02T13:00:00Z"));
        assert_eq!(
            c.real_at(t("2026-03-02T13:00:00Z")),
            t("2030-01-01T00:00:25Z")
        );
        let real = Clock::new(t(T0), t(T0), 1.0).unwrap();
        assert_eq!(
            real.now(t("2026-03-01T12:00:05Z")),
            t("2026-03-01T12:00:05Z")
        );
        assert!(matches!(
            Clock::new(t(T0), t(T0), 0.0),
            Err(CertManagerError::BadScale(_))
        ));
        assert!(Clock::new(t(T0), t(T0), f64::NAN).is_err());
    }

    #[test]
    fn csv_escapes_like_cert_manager() {
        assert_eq!(csv(&["a".into(), "b".into()]), "a,b");
        assert_eq!(csv(&["a,b".into()]), "\"a,b\"");
        assert_eq!(csv(&[]), "");
    }

    #[test]
    fn secret_template_changes_update_metadata_without_reissue() {
        let ss = with_status(
            self_signed_cluster_issuer(),
            json!({"conditions":[{"type":"Ready","status":"True","reason":"IsReady"}]}),
        );
        let c = certificate(
            "t",
            "default",
            "selfsigned",
            json!({"commonName":"t","privateKey":{"algorithm":"ECDSA"},
                   "secretTemplate":{"labels":{"a":"1"}}}),
        );
        let now = t(T0);
        let (s1, st1, _) = issue(CertificateInputs {
            certificate: &c,
            issuer: Some(&ss),
            ca_secret: None,
            secret: None,
            now,
        });
        let mut c = with_status(c, st1);
        c["spec"]["secretTemplate"] = json!({"labels":{"a":"2"},"annotations":{"b":"x"}});
        match reconcile_certificate(CertificateInputs {
            certificate: &c,
            issuer: Some(&ss),
            ca_secret: None,
            secret: Some(&s1),
            now,
        })
        .unwrap()
        {
            CertificateAction::UpToDate {
                status,
                secret_update: Some(updated),
                ..
            } => {
                assert_eq!(status, None);
                assert_eq!(updated["metadata"]["labels"]["a"], "2");
                assert_eq!(updated["metadata"]["annotations"]["b"], "x");
                assert_eq!(updated["data"], s1["data"], "no re-issue");
                assert_eq!(
                    updated["metadata"]["annotations"]["cert-manager.io/certificate-name"],
                    "t"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
