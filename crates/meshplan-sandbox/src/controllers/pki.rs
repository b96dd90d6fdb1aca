//! Real x509 material for the simulated cert-manager.
//!
//! [`issue`] signs a certificate described by a [`CertRequest`] with a [`Signer`] (the
//! certificate's own key for a selfSigned issuer, or a CA keypair read from a Secret), and
//! returns what cert-manager writes into a `kubernetes.io/tls` Secret: `tls.crt` (the leaf plus
//! any intermediate that is not a self-signed root), `tls.key` (encoded as cert-manager encodes
//! it: PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY` and PKCS#8 for Ed25519 by default, PKCS#8
//! for every algorithm when asked), and `ca.crt` (the root of the chain, or the certificate
//! itself when self-signed).
//!
//! Nothing here reads a clock: `notBefore` is the `now` carried by the request. Keys come from
//! [`generate_key`] (RSA through the `rsa` crate, ECDSA and Ed25519 through ring) or from an
//! existing Secret through [`PrivateKey::from_pem`], so that a re-issue can keep the key
//! (`rotationPolicy: Never`) or rotate it (`Always`). [`parse_certificate_pem`] reads back what a
//! Secret holds (names, CA flag, validity) with x509-parser; PEM goes through the `pem` crate,
//! and the PKCS#1 / SEC1 / PKCS#8 key containers through RustCrypto's `pkcs8` and `sec1`.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};

/// Errors of certificate issuance and PEM handling.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PkiError {
    /// A Go duration string that does not parse.
    #[error("invalid duration {0:?}: expected a Go duration such as \"2160h\" or \"1h30m\"")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_duration))]
    BadDuration(String),
    /// A duration that is zero or negative.
    #[error("certificate duration must be positive, got {0}")]
    #[diagnostic(code(meshplan::sandbox::pki::non_positive_duration))]
    NonPositiveDuration(String),
    /// A private key algorithm that is not RSA, ECDSA or Ed25519.
    #[error("unsupported private key algorithm {0:?}")]
    #[diagnostic(code(meshplan::sandbox::pki::unsupported_algorithm))]
    UnsupportedAlgorithm(String),
    /// A key size this algorithm does not support here.
    #[error("unsupported {algorithm} key size {size}")]
    #[diagnostic(
        code(meshplan::sandbox::pki::unsupported_key_size),
        help("RSA: 2048, 3072 or 4096; ECDSA: 256 or 384; Ed25519 takes no size")
    )]
    UnsupportedKeySize {
        /// The algorithm name.
        algorithm: &'static str,
        /// The rejected size.
        size: u32,
    },
    /// A usage name cert-manager does not know.
    #[error("unknown key usage {0:?}")]
    #[diagnostic(code(meshplan::sandbox::pki::unknown_usage))]
    UnknownUsage(String),
    /// An IP address SAN that does not parse.
    #[error("invalid IP address {0:?}")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_ip))]
    BadIpAddress(String),
    /// A name that cannot be encoded in a certificate (non-ASCII DNS name, URI or email).
    #[error("invalid {kind} {value:?} in certificate request")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_name))]
    BadName {
        /// What kind of name.
        kind: &'static str,
        /// The rejected value.
        value: String,
    },
    /// PEM text that holds no usable block.
    #[error("bad PEM: {0}")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_pem))]
    BadPem(String),
    /// DER content that does not parse.
    #[error("bad {what}: {detail}")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_der))]
    BadDer {
        /// What was being read.
        what: &'static str,
        /// Where it failed.
        detail: String,
    },
    /// The signer's certificate is not a CA.
    #[error("certificate is not a CA")]
    #[diagnostic(code(meshplan::sandbox::pki::not_a_ca))]
    SignerNotCa,
    /// The signer's key does not belong to the signer's certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    #[diagnostic(code(meshplan::sandbox::pki::key_mismatch))]
    SignerKeyMismatch,
    /// Key generation failed.
    #[error("generating a {algorithm} private key failed")]
    #[diagnostic(code(meshplan::sandbox::pki::keygen))]
    KeyGeneration {
        /// The algorithm.
        algorithm: &'static str,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A private key the signing library refuses.
    #[error("the private key cannot be used for signing")]
    #[diagnostic(code(meshplan::sandbox::pki::bad_key))]
    BadKey(#[source] rcgen::Error),
    /// Signing failed inside the x509 library.
    #[error("signing the certificate failed")]
    #[diagnostic(code(meshplan::sandbox::pki::sign))]
    Sign(#[source] rcgen::Error),
    /// notBefore or notAfter outside what a certificate can hold.
    #[error("certificate validity out of range: {0}")]
    #[diagnostic(code(meshplan::sandbox::pki::time_range))]
    TimeOutOfRange(String),
    /// The operating system's random generator failed.
    #[error("the system random generator failed: {0}")]
    #[diagnostic(code(meshplan::sandbox::pki::rng))]
    Random(String),
    /// A `spec.privateKey.encoding` that is neither PKCS1 nor PKCS8.
    #[error("unsupported private key encoding {0:?}: expected PKCS1 or PKCS8")]
    #[diagnostic(code(meshplan::sandbox::pki::unsupported_encoding))]
    UnsupportedEncoding(String),
}

type Result<T> = std::result::Result<T, PkiError>;

/// A private key algorithm, as `spec.privateKey.algorithm` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAlgorithm {
    /// RSA (2048, 3072, 4096 bits).
    Rsa,
    /// ECDSA (P-256, P-384).
    Ecdsa,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// Parses `RSA`, `ECDSA` or `Ed25519` (case-insensitive, as the CRD enum allows).
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" => Ok(Self::Rsa),
            "ecdsa" => Ok(Self::Ecdsa),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(PkiError::UnsupportedAlgorithm(s.to_string())),
        }
    }

    /// The name cert-manager uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Ecdsa => "ECDSA",
            Self::Ed25519 => "Ed25519",
        }
    }
}

/// A private key algorithm and size. Build it with [`KeySpec::new`], which applies
/// cert-manager's defaults (RSA 2048, ECDSA 256) and rejects sizes this module cannot make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySpec {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Bits for RSA, curve size for ECDSA, 0 for Ed25519.
    pub size: u32,
}

impl KeySpec {
    /// Validates an algorithm and optional size (cert-manager's default algorithm is RSA).
    pub(crate) fn new(algorithm: KeyAlgorithm, size: Option<u32>) -> Result<Self> {
        let size = match (algorithm, size) {
            (KeyAlgorithm::Rsa, None) => 2048,
            (KeyAlgorithm::Rsa, Some(s @ (2048 | 3072 | 4096))) => s,
            (KeyAlgorithm::Ecdsa, None) => 256,
            (KeyAlgorithm::Ecdsa, Some(s @ (256 | 384))) => s,
            // cert-manager ignores the size for Ed25519.
            (KeyAlgorithm::Ed25519, _) => 0,
            (a, Some(s)) => {
                return Err(PkiError::UnsupportedKeySize {
                    algorithm: a.name(),
                    size: s,
                });
            }
        };
        Ok(Self { algorithm, size })
    }
}

/// How `tls.key` is encoded (`spec.privateKey.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum KeyEncoding {
    /// cert-manager's default: PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for Ed25519.
    #[default]
    Pkcs1,
    /// PKCS#8 for every algorithm.
    Pkcs8,
}

impl KeyEncoding {
    /// Parses `PKCS1` / `PKCS8`.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "PKCS1" => Ok(Self::Pkcs1),
            "PKCS8" => Ok(Self::Pkcs8),
            other => Err(PkiError::UnsupportedEncoding(other.to_string())),
        }
    }
}

/// A private key held as PKCS#8 DER, with its algorithm and size.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PrivateKey {
    spec: KeySpec,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// The algorithm and size of this key.
    pub(crate) fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The key's identity: its raw public key. Two keys are the same key when these are equal.
    pub(crate) fn identity(&self) -> &[u8] {
        &self.public
    }

    /// Reads a key from PEM: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1).
    pub(crate) fn from_pem(pem: &str) -> Result<Self> {
        let blocks = pem_blocks(pem)?;
        let Some((label, der)) = blocks.into_iter().find(|(l, _)| l.ends_with("PRIVATE KEY"))
        else {
            return Err(PkiError::BadPem("no PRIVATE KEY block".into()));
        };
        let pkcs8 = match label.as_str() {
            "PRIVATE KEY" => der,
            "RSA PRIVATE KEY" => keys::pkcs1_to_pkcs8(&der)?,
            "EC PRIVATE KEY" => keys::sec1_to_pkcs8(&der)?,
            other => return Err(PkiError::BadPem(format!("unsupported key block {other:?}"))),
        };
        Self::from_pkcs8(pkcs8)
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self> {
        let spec = keys::pkcs8_spec(&pkcs8)?;
        let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(PkiError::BadKey)?;
        Ok(Self {
            spec,
            public: pair.public_key_raw().to_vec(),
            pkcs8,
        })
    }

    fn key_pair(&self) -> Result<KeyPair> {
        KeyPair::try_from(self.pkcs8.as_slice()).map_err(PkiError::BadKey)
    }

    /// The key as PEM in the given encoding (see [`KeyEncoding`]).
    pub(crate) fn to_pem(&self, encoding: KeyEncoding) -> Result<String> {
        Ok(match (encoding, self.spec.algorithm) {
            (KeyEncoding::Pkcs1, KeyAlgorithm::Rsa) => {
                pem_encode("RSA PRIVATE KEY", &keys::pkcs8_inner(&self.pkcs8)?)
            }
            (KeyEncoding::Pkcs1, KeyAlgorithm::Ecdsa) => {
                pem_encode("EC PRIVATE KEY", &keys::pkcs8_to_sec1(&self.pkcs8)?)
            }
            _ => pem_encode("PRIVATE KEY", &self.pkcs8),
        })
    }
}

/// Generates a new key. RSA keys come from the `rsa` crate (ring cannot generate them).
pub(crate) fn generate_key(spec: KeySpec) -> Result<PrivateKey> {
    let pkcs8 = match spec.algorithm {
        KeyAlgorithm::Rsa => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let failed = |e: Box<dyn std::error::Error + Send + Sync>| PkiError::KeyGeneration {
                algorithm: "RSA",
                source: e,
            };
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, spec.size as usize)
                .map_err(|e| failed(Box::new(e)))?;
            key.to_pkcs8_der()
                .map_err(|e| failed(Box::new(e)))?
                .as_bytes()
                .to_vec()
        }
        KeyAlgorithm::Ecdsa => {
            let alg = if spec.size == 384 {
                &rcgen::PKCS_ECDSA_P384_SHA384
            } else {
                &rcgen::PKCS_ECDSA_P256_SHA256
            };
            KeyPair::generate_for(alg)
                .map_err(|e| PkiError::KeyGeneration {
                    algorithm: "ECDSA",
                    source: Box::new(e),
                })?
                .serialize_der()
        }
        KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| PkiError::KeyGeneration {
                algorithm: "Ed25519",
                source: Box::new(e),
            })?
            .serialize_der(),
    };
    PrivateKey::from_pkcs8(pkcs8)
}

/// Subject fields besides the common name (`spec.subject`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subject {
    /// O
    pub organizations: Vec<String>,
    /// OU
    pub organizational_units: Vec<String>,
    /// C
    pub countries: Vec<String>,
    /// ST
    pub provinces: Vec<String>,
    /// L
    pub localities: Vec<String>,
    /// street
    pub street_addresses: Vec<String>,
    /// postalCode
    pub postal_codes: Vec<String>,
    /// serialNumber
    pub serial_number: Option<String>,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub(crate) struct CertRequest {
    /// CN, if any.
    pub common_name: Option<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs (textual).
    pub ip_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Email SANs.
    pub email_addresses: Vec<String>,
    /// Basic constraints CA:TRUE.
    pub is_ca: bool,
    /// cert-manager usage names; empty means cert-manager's default
    /// (`digital signature`, `key encipherment`).
    pub usages: Vec<String>,
    /// Validity length.
    pub duration: SignedDuration,
    /// Other subject fields.
    pub subject: Subject,
    /// notBefore (truncated to whole seconds).
    pub now: Timestamp,
}

/// Who signs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signer<'a> {
    /// The certificate's own key.
    SelfSigned,
    /// A CA keypair: `cert_pem` may hold a chain, the CA certificate first.
    Ca {
        /// The CA certificate (and possibly its chain) in PEM.
        cert_pem: &'a str,
        /// The CA private key in PEM.
        key_pem: &'a str,
    },
}

/// The result of an issuance, ready for a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// Leaf, then intermediates that are not self-signed roots.
    pub tls_crt: String,
    /// The private key PEM.
    pub tls_key: String,
    /// The chain's root (or highest) CA; the certificate itself when self-signed.
    pub ca_crt: String,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// Serial number, lowercase hex.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "checked by the tests of serial numbers")
    )]
    pub serial_hex: String,
}

/// Maps cert-manager usage names to key usages and extended key usages, adding `cert sign`
/// for a CA as cert-manager does.
pub(crate) fn map_usages(
    usages: &[String],
    is_ca: bool,
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>)> {
    let defaults = [
        "digital signature".to_string(),
        "key encipherment".to_string(),
    ];
    let names: &[String] = if usages.is_empty() { &defaults } else { usages };
    let mut ku = Vec::new();
    let mut eku = Vec::new();
    let push_ku = |k: KeyUsagePurpose, ku: &mut Vec<KeyUsagePurpose>| {
        if !ku.contains(&k) {
            ku.push(k);
        }
    };
    for name in names {
        use ExtendedKeyUsagePurpose as E;
        use KeyUsagePurpose as K;
        match name.as_str() {
            "signing" | "digital signature" => push_ku(K::DigitalSignature, &mut ku),
            "content commitment" => push_ku(K::ContentCommitment, &mut ku),
            "key encipherment" => push_ku(K::KeyEncipherment, &mut ku),
            "key agreement" => push_ku(K::KeyAgreement, &mut ku),
            "data encipherment" => push_ku(K::DataEncipherment, &mut ku),
            "cert sign" => push_ku(K::KeyCertSign, &mut ku),
            "crl sign" => push_ku(K::CrlSign, &mut ku),
            "encipher only" => push_ku(K::EncipherOnly, &mut ku),
            "decipher only" => push_ku(K::DecipherOnly, &mut ku),
            "any" => eku.push(E::Any),
            "server auth" => eku.push(E::ServerAuth),
            "client auth" => eku.push(E::ClientAuth),
            "code signing" => eku.push(E::CodeSigning),
            "email protection" | "s/mime" => eku.push(E::EmailProtection),
            "ipsec end system" => eku.push(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
            "ipsec tunnel" => eku.push(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
            "ipsec user" => eku.push(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
            "timestamping" => eku.push(E::TimeStamping),
            "ocsp signing" => eku.push(E::OcspSigning),
            "microsoft sgc" => eku.push(E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
            "netscape sgc" => eku.push(E::Other(vec![2, 16, 840, 1, 113_730, 4, 1])),
            other => return Err(PkiError::UnknownUsage(other.to_string())),
        }
    }
    if is_ca {
        push_ku(KeyUsagePurpose::KeyCertSign, &mut ku);
    }
    eku.dedup();
    Ok((ku, eku))
}

/// Parses a Go duration (`"48h"`, `"2160h0m0s"`, `"1h30m"`, `"90s"`, `"1.5h"`, `"500ms"`), as
/// cert-manager reads `spec.duration` and `spec.renewBefore`.
pub(crate) fn parse_go_duration(s: &str) -> Result<SignedDuration> {
    meshplan_k8s::parse_go_duration(s)
        .map(SignedDuration::from_nanos)
        .map_err(|_| PkiError::BadDuration(s.to_string()))
}

/// Formats a duration as Go prints it (`"48h0m0s"`, `"1h30m0s"`, `"25s"`).
pub(crate) fn format_go_duration(d: SignedDuration) -> String {
    let nanos = d.as_nanos();
    let nanos = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    meshplan_k8s::format_go_duration(nanos)
}

fn to_offset(ts: Timestamp) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .map_err(|e| PkiError::TimeOutOfRange(e.to_string()))
}

fn ia5(kind: &'static str, value: &str) -> Result<rcgen::string::Ia5String> {
    rcgen::string::Ia5String::try_from(value).map_err(|_| PkiError::BadName {
        kind,
        value: value.to_string(),
    })
}

fn dn_value(s: &str) -> DnValue {
    // Go writes PrintableString when it can, UTF8String otherwise.
    match rcgen::string::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_string()),
    }
}

fn subject_dn(req: &CertRequest) -> DistinguishedName {
    // Go's pkix.Name order: C, ST, L, street, postalCode, O, OU, CN, serialNumber.
    let mut dn = DistinguishedName::new();
    let s = &req.subject;
    let custom = |arcs: &[u64]| DnType::CustomDnType(arcs.to_vec());
    for v in &s.countries {
        dn.push(DnType::CountryName, dn_value(v));
    }
    for v in &s.provinces {
        dn.push(DnType::StateOrProvinceName, dn_value(v));
    }
    for v in &s.localities {
        dn.push(DnType::LocalityName, dn_value(v));
    }
    for v in &s.street_addresses {
        dn.push(custom(&[2, 5, 4, 9]), dn_value(v));
    }
    for v in &s.postal_codes {
        dn.push(custom(&[2, 5, 4, 17]), dn_value(v));
    }
    for v in &s.organizations {
        dn.push(DnType::OrganizationName, dn_value(v));
    }
    for v in &s.organizational_units {
        dn.push(DnType::OrganizationalUnitName, dn_value(v));
    }
    if let Some(cn) = req.common_name.as_deref().filter(|c| !c.is_empty()) {
        dn.push(DnType::CommonName, dn_value(cn));
    }
    if let Some(sn) = s.serial_number.as_deref().filter(|c| !c.is_empty()) {
        dn.push(custom(&[2, 5, 4, 5]), dn_value(sn));
    }
    dn
}

fn random_serial() -> Result<Vec<u8>> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| PkiError::Random(e.to_string()))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01; // positive, 16 significant bytes
    Ok(serial.to_vec())
}

/// Issues a certificate for `key` (see the module overview for what the outputs hold).
pub(crate) fn issue(
    req: &CertRequest,
    key: &PrivateKey,
    signer: Signer<'_>,
    encoding: KeyEncoding,
) -> Result<Issued> {
    if !req.duration.is_positive() {
        return Err(PkiError::NonPositiveDuration(format_go_duration(
            req.duration,
        )));
    }
    let not_before = Timestamp::from_second(req.now.as_second())
        .map_err(|e| PkiError::TimeOutOfRange(format!("notBefore: {e}")))?;
    let not_after = not_before
        .checked_add(req.duration)
        .map_err(|e| PkiError::TimeOutOfRange(format!("notAfter: {e}")))?;
    let not_after = Timestamp::from_second(not_after.as_second())
        .map_err(|e| PkiError::TimeOutOfRange(format!("notAfter: {e}")))?;

    let (key_usages, extended_key_usages) = map_usages(&req.usages, req.is_ca)?;
    let mut sans = Vec::new();
    for d in &req.dns_names {
        sans.push(SanType::DnsName(ia5("DNS name", d)?));
    }
    for ip in &req.ip_addresses {
        let addr: IpAddr = ip.parse().map_err(|_| PkiError::BadIpAddress(ip.clone()))?;
        sans.push(SanType::IpAddress(addr));
    }
    for u in &req.uris {
        sans.push(SanType::URI(ia5("URI", u)?));
    }
    for e in &req.email_addresses {
        sans.push(SanType::Rfc822Name(ia5("email address", e)?));
    }
    let serial = random_serial()?;

    let mut params = CertificateParams::default();
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.subject_alt_names = sans;
    params.distinguished_name = subject_dn(req);
    params.is_ca = if req.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = key_usages;
    params.extended_key_usages = extended_key_usages;

    let leaf_pair = key.key_pair()?;
    let sign_err = PkiError::Sign;
    let (tls_crt, ca_crt) = match signer {
        Signer::SelfSigned => {
            let cert = params.self_signed(&leaf_pair).map_err(sign_err)?;
            let pem = pem_encode("CERTIFICATE", cert.der());
            (pem.clone(), pem)
        }
        Signer::Ca { cert_pem, key_pem } => {
            let chain = certificate_chain(cert_pem)?;
            let Some(ca) = chain.first() else {
                return Err(PkiError::BadPem("no CERTIFICATE block".into()));
            };
            if !ca.is_ca {
                return Err(PkiError::SignerNotCa);
            }
            let ca_key = PrivateKey::from_pem(key_pem)?;
            if ca_key.identity() != ca.public_key.as_slice() {
                return Err(PkiError::SignerKeyMismatch);
            }
            let mut issuer_params = CertificateParams::default();
            issuer_params.distinguished_name = ca.subject_dn();
            match &ca.subject_key_id {
                Some(ski) => {
                    issuer_params.key_identifier_method = KeyIdMethod::PreSpecified(ski.clone());
                    params.use_authority_key_identifier_extension = true;
                }
                None => params.use_authority_key_identifier_extension = false,
            }
            let issuer = Issuer::new(issuer_params, ca_key.key_pair()?);
            let cert = params.signed_by(&leaf_pair, &issuer).map_err(sign_err)?;
            // cert-manager: the chain holds the leaf and every CA that is not a self-signed
            // root; ca.crt is the top of the chain.
            let mut tls = pem_encode("CERTIFICATE", cert.der());
            for c in chain.iter().filter(|c| !c.is_self_issued()) {
                tls.push_str(&pem_encode("CERTIFICATE", &c.der));
            }
            let top = chain.last().unwrap_or(ca);
            (tls, pem_encode("CERTIFICATE", &top.der))
        }
    };
    Ok(Issued {
        tls_crt,
        tls_key: key.to_pem(encoding)?,
        ca_crt,
        not_before,
        not_after,
        serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// What [`parse_certificate_pem`] reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The DER of the whole certificate.
    pub der: Vec<u8>,
    /// Subject attributes in order: (OID arcs, DER string tag, value).
    pub subject: Vec<(Vec<u64>, u8, String)>,
    /// Raw DER of the subject Name.
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer Name.
    pub issuer_raw: Vec<u8>,
    /// The subject CN, if any.
    pub common_name: Option<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs, textual.
    pub ip_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Email SANs.
    pub email_addresses: Vec<String>,
    /// Basic constraints CA flag.
    pub is_ca: bool,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// Subject key identifier, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// The raw public key (the BIT STRING content of the SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
    /// Serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
}

impl CertInfo {
    /// Subject equals issuer: a self-issued (root) certificate.
    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    fn subject_dn(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (oid, tag, value) in &self.subject {
            let v = match tag {
                0x13 => rcgen::string::PrintableString::try_from(value.as_str())
                    .map(DnValue::PrintableString)
                    .unwrap_or_else(|_| DnValue::Utf8String(value.clone())),
                0x16 => rcgen::string::Ia5String::try_from(value.as_str())
                    .map(DnValue::Ia5String)
                    .unwrap_or_else(|_| DnValue::Utf8String(value.clone())),
                _ => DnValue::Utf8String(value.clone()),
            };
            dn.push(DnType::CustomDnType(oid.clone()), v);
        }
        dn
    }
}

/// Parses the first certificate of a PEM text.
pub(crate) fn parse_certificate_pem(pem: &str) -> Result<CertInfo> {
    certificate_chain(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::BadPem("no CERTIFICATE block".into()))
}

/// Parses every certificate of a PEM text, in order.
pub(crate) fn certificate_chain(pem: &str) -> Result<Vec<CertInfo>> {
    pem_blocks(pem)?
        .into_iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| certificate_info(der))
        .collect()
}

/// Splits PEM text into (label, DER) blocks.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let blocks = pem::parse_many(text).map_err(|e| PkiError::BadPem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(PkiError::BadPem("no PEM block found".into()));
    }
    Ok(blocks
        .into_iter()
        .map(|block| (block.tag().to_string(), block.into_contents()))
        .collect())
}

/// Encodes DER as PEM with 64-column lines and `\n` line ends, as Go writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Reads the fields of a certificate that the controllers need.
fn certificate_info(der: Vec<u8>) -> Result<CertInfo> {
    use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};

    let bad = |e: &dyn std::fmt::Display| PkiError::BadDer {
        what: "certificate",
        detail: e.to_string(),
    };
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| bad(&e))?;
    let mut subject = Vec::new();
    for attribute in cert.subject().iter().flat_map(|rdn| rdn.iter()) {
        let value = attribute.attr_value();
        let text = if value.tag() == x509_parser::asn1_rs::Tag::BmpString {
            let units: Vec<u16> = value
                .data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(value.data).into_owned()
        };
        let oid: Vec<u64> = attribute.attr_type().iter().into_iter().flatten().collect();
        // Name attribute values are universal strings: their tag number is one byte.
        #[allow(clippy::cast_possible_truncation)]
        subject.push((oid, value.tag().0 as u8, text));
    }
    let common_name = subject
        .iter()
        .find(|(oid, _, _)| oid.as_slice() == [2, 5, 4, 3])
        .map(|(_, _, v)| v.clone());
    let (mut dns_names, mut ip_addresses, mut uris, mut email_addresses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Some(san) = cert.subject_alternative_name().map_err(|e| bad(&e))? {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(m) => email_addresses.push((*m).to_string()),
                GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                GeneralName::URI(u) => uris.push((*u).to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(b4) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(std::net::Ipv4Addr::from(b4).to_string());
                    } else if let Ok(b16) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(std::net::Ipv6Addr::from(b16).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| bad(&e))?
        .is_some_and(|bc| bc.value.ca);
    let subject_key_id = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let time = |t: &x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| PkiError::BadDer {
            what: "certificate time",
            detail: e.to_string(),
        })
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        subject,
        common_name,
        dns_names,
        ip_addresses,
        uris,
        email_addresses,
        is_ca,
        not_before: time(&validity.not_before)?,
        not_after: time(&validity.not_after)?,
        subject_key_id,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        serial_hex: cert
            .raw_serial()
            .iter()
            .skip_while(|&&b| b == 0)
            .map(|b| format!("{b:02x}"))
            .collect(),
        der,
    })
}

/// Private key containers: PKCS#8 (what the signing library takes) to and from PKCS#1 (RSA)
/// and SEC1 (ECDSA), the encodings cert-manager writes by default.
mod keys {
    use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
    use pkcs8::der::{Decode as _, Encode as _};
    use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfoRef};
    use sec1::{EcParameters, EcPrivateKey};

    use super::{KeyAlgorithm, KeySpec, PkiError, Result};

    const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

    fn err(what: &'static str) -> impl Fn(pkcs8::der::Error) -> PkiError {
        move |e| PkiError::BadDer {
            what,
            detail: e.to_string(),
        }
    }

    fn wrap(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Vec<u8>> {
        let key = OctetStringRef::new(key).map_err(err("PKCS#8 key"))?;
        PrivateKeyInfoRef::new(algorithm, key)
            .to_der()
            .map_err(err("PKCS#8 key"))
    }

    fn read(pkcs8: &[u8]) -> Result<PrivateKeyInfoRef<'_>> {
        PrivateKeyInfoRef::from_der(pkcs8).map_err(err("PKCS#8 key"))
    }

    /// The named curve of a PKCS#8 EC key.
    fn curve(info: &PrivateKeyInfoRef<'_>) -> Option<ObjectIdentifier> {
        info.algorithm.parameters?.decode_as().ok()
    }

    /// Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo.
    pub(super) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>> {
        let algorithm = AlgorithmIdentifierRef {
            oid: RSA,
            parameters: Some(AnyRef::NULL),
        };
        wrap(algorithm, pkcs1)
    }

    /// Wraps a SEC1 ECPrivateKey (which must name its curve) in PKCS#8.
    pub(super) fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>> {
        let key = EcPrivateKey::from_der(sec1).map_err(err("EC private key"))?;
        let Some(EcParameters::NamedCurve(curve)) = key.parameters else {
            return Err(PkiError::BadDer {
                what: "EC private key",
                detail: "no named curve".into(),
            });
        };
        let algorithm = AlgorithmIdentifierRef {
            oid: EC,
            parameters: Some(AnyRef::from(&curve)),
        };
        wrap(algorithm, sec1)
    }

    /// The algorithm and size of a PKCS#8 key.
    pub(super) fn pkcs8_spec(pkcs8: &[u8]) -> Result<KeySpec> {
        let info = read(pkcs8)?;
        let (algorithm, size) = match info.algorithm.oid {
            RSA => {
                let key = rsa::pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
                    .map_err(err("RSA key"))?;
                let n = key.modulus.as_bytes();
                let bits = n.first().map_or(0, |&b| {
                    u32::try_from(n.len() - 1).unwrap_or(u32::MAX / 8) * 8 + (8 - b.leading_zeros())
                });
                // Round to the nominal size (a 2048-bit modulus may show 2047 bits).
                (KeyAlgorithm::Rsa, bits.div_ceil(8) * 8)
            }
            EC => {
                let size = match curve(&info) {
                    Some(P256) => 256,
                    Some(P384) => 384,
                    Some(P521) => 521,
                    _ => {
                        return Err(PkiError::BadDer {
                            what: "EC key",
                            detail: "unknown curve".into(),
                        });
                    }
                };
                (KeyAlgorithm::Ecdsa, size)
            }
            ED25519 => (KeyAlgorithm::Ed25519, 0),
            other => {
                let arcs: Vec<u32> = other.arcs().collect();
                return Err(PkiError::UnsupportedAlgorithm(format!("key OID {arcs:?}")));
            }
        };
        Ok(KeySpec { algorithm, size })
    }

    /// The private key inside a PKCS#8 key (PKCS#1 for RSA).
    pub(super) fn pkcs8_inner(pkcs8: &[u8]) -> Result<Vec<u8>> {
        Ok(read(pkcs8)?.private_key.as_bytes().to_vec())
    }

    /// A SEC1 ECPrivateKey with its named curve, as Go's MarshalECPrivateKey writes it.
    pub(super) fn pkcs8_to_sec1(pkcs8: &[u8]) -> Result<Vec<u8>> {
        let info = read(pkcs8)?;
        let curve = curve(&info).ok_or_else(|| PkiError::BadDer {
            what: "EC key",
            detail: "no curve parameter".into(),
        })?;
        let mut key =
            EcPrivateKey::from_der(info.private_key.as_bytes()).map_err(err("EC private key"))?;
        key.parameters = Some(EcParameters::NamedCurve(curve));
        key.to_der().map_err(err("EC private key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn now() -> Timestamp {
        "2026-01-10T08:00:00Z".parse().unwrap()
    }

    fn req(cn: &str) -> CertRequest {
        CertRequest {
            common_name: Some(cn.to_string()),
            dns_names: vec![],
            ip_addresses: vec![],
            uris: vec![],
            email_addresses: vec![],
            is_ca: false,
            usages: vec![],
            duration: SignedDuration::from_hours(48),
            subject: Subject::default(),
            now: now(),
        }
    }

    fn der_of(pem: &str) -> Vec<u8> {
        pem_blocks(pem).unwrap().remove(0).1
    }

    fn ecdsa() -> PrivateKey {
        generate_key(KeySpec::new(KeyAlgorithm::Ecdsa, None).unwrap()).unwrap()
    }

    fn self_signed_ca(cn: &str, key: &PrivateKey) -> Issued {
        let mut r = req(cn);
        r.is_ca = true;
        r.duration = SignedDuration::from_hours(2160);
        issue(&r, key, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap()
    }

    #[test]
    fn self_signed_ca_has_names_ca_flag_usages_and_validity() {
        let key = ecdsa();
        let mut r = req("root.example");
        r.is_ca = true;
        r.dns_names = vec!["root.example".into(), "alt.example".into()];
        r.ip_addresses = vec!["10.0.0.1".into(), "::1".into()];
        r.uris = vec!["spiffe://cluster.local/ns/x/sa/y".into()];
        r.email_addresses = vec!["ops@example.com".into()];
        r.subject.organizations = vec!["meshplan".into()];
        r.usages = vec![
            "digital signature".into(),
            "server auth".into(),
            "client auth".into(),
        ];
        let out = issue(&r, &key, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap();
        assert_eq!(
            out.tls_crt, out.ca_crt,
            "self-signed: ca.crt is the cert itself"
        );
        let der = der_of(&out.tls_crt);
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        let cn = x
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "root.example");
        let org = x
            .subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(org, "meshplan");
        let bc = x.basic_constraints().unwrap().unwrap();
        assert!(bc.value.ca);
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_cert_sign());
        assert!(!ku.key_encipherment());
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        let mut dns = vec![];
        let mut ips = vec![];
        let mut uris = vec![];
        let mut mails = vec![];
        for n in &san.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(b.len()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::RFC822Name(m) => mails.push(m.to_string()),
                _ => {}
            }
        }
        assert_eq!(dns, ["root.example", "alt.example"]);
        assert_eq!(ips, [4, 16]);
        assert_eq!(uris, ["spiffe://cluster.local/ns/x/sa/y"]);
        assert_eq!(mails, ["ops@example.com"]);
        assert_eq!(x.validity().not_before.timestamp(), now().as_second());
        assert_eq!(
            x.validity().not_after.timestamp(),
            now().as_second() + 48 * 3600
        );
        assert_eq!(
            out.not_after.as_second() - out.not_before.as_second(),
            48 * 3600
        );
        // Self-signature verifies.
        x.verify_signature(None).unwrap();
        // Our own reader agrees with x509-parser.
        let info = parse_certificate_pem(&out.tls_crt).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("root.example"));
        assert_eq!(info.dns_names, ["root.example", "alt.example"]);
        assert_eq!(info.ip_addresses, ["10.0.0.1", "::1"]);
        assert_eq!(info.uris, ["spiffe://cluster.local/ns/x/sa/y"]);
        assert_eq!(info.email_addresses, ["ops@example.com"]);
        assert!(info.is_ca && info.is_self_issued());
        assert_eq!(info.not_before, out.not_before);
        assert_eq!(info.not_after, out.not_after);
        assert_eq!(info.serial_hex, out.serial_hex);
        assert_eq!(info.public_key, key.identity());
    }

    #[test]
    fn ca_signed_leaf_chains_to_the_ca_and_verifies() {
        let ca_key = ecdsa();
        let ca = self_signed_ca("meshplan-root", &ca_key);
        let ca_key_pem = ca.tls_key.clone();
        let leaf_key = ecdsa();
        let mut r = req("leaf.example");
        r.dns_names = vec!["leaf.example".into()];
        r.usages = vec!["server auth".into()];
        let leaf = issue(
            &r,
            &leaf_key,
            Signer::Ca {
                cert_pem: &ca.tls_crt,
                key_pem: &ca_key_pem,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        // tls.crt holds only the leaf (the root is self-signed), ca.crt the root.
        assert_eq!(pem_blocks(&leaf.tls_crt).unwrap().len(), 1);
        assert_eq!(leaf.ca_crt, ca.tls_crt);
        let leaf_der = der_of(&leaf.tls_crt);
        let ca_der = der_of(&ca.tls_crt);
        let (_, lx) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, cx) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(lx.issuer().as_raw(), cx.subject().as_raw());
        lx.verify_signature(Some(cx.public_key())).unwrap();
        // A different key does not verify it.
        let other = self_signed_ca("meshplan-root", &ecdsa());
        let other_der = der_of(&other.tls_crt);
        let (_, ox) = X509Certificate::from_der(&other_der).unwrap();
        assert!(lx.verify_signature(Some(ox.public_key())).is_err());
        // Leaf is not a CA; AKI equals the CA's SKI.
        assert!(!lx.basic_constraints().unwrap().unwrap().value.ca);
        let ski = parse_certificate_pem(&ca.tls_crt)
            .unwrap()
            .subject_key_id
            .unwrap();
        let aki = lx
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski);
        // Only an extended usage was asked for: no KeyUsage extension, as Go omits an empty one.
        assert!(lx.key_usage().unwrap().is_none());
        assert!(lx.extended_key_usage().unwrap().unwrap().value.server_auth);
        // Without usages, cert-manager's default: digital signature + key encipherment.
        let plain = issue(
            &req("plain"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: &ca.tls_crt,
                key_pem: &ca_key_pem,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        let plain_der = der_of(&plain.tls_crt);
        let (_, px) = X509Certificate::from_der(&plain_der).unwrap();
        let ku = px.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        assert!(px.extended_key_usage().unwrap().is_none());
    }

    #[test]
    fn intermediate_ca_goes_into_the_chain_and_root_into_ca_crt() {
        let root_key = ecdsa();
        let root = self_signed_ca("root", &root_key);
        let int_key = ecdsa();
        let mut r = req("intermediate");
        r.is_ca = true;
        let int = issue(
            &r,
            &int_key,
            Signer::Ca {
                cert_pem: &root.tls_crt,
                key_pem: &root.tls_key,
            },
            KeyEncoding::Pkcs8,
        )
        .unwrap();
        // The intermediate's secret holds the intermediate (root omitted) and ca.crt = root.
        assert_eq!(int.ca_crt, root.tls_crt);
        let int_chain = format!("{}{}", int.tls_crt, root.tls_crt);
        let leaf = issue(
            &req("leaf"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: &int_chain,
                key_pem: &int.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        let blocks = certificate_chain(&leaf.tls_crt).unwrap();
        assert_eq!(blocks.len(), 2, "leaf + intermediate");
        assert_eq!(blocks[1].common_name.as_deref(), Some("intermediate"));
        assert_eq!(leaf.ca_crt, root.tls_crt);
        let (_, lx) = X509Certificate::from_der(&blocks[0].der).unwrap();
        let (_, ix) = X509Certificate::from_der(&blocks[1].der).unwrap();
        lx.verify_signature(Some(ix.public_key())).unwrap();
    }

    #[test]
    fn non_ca_signer_and_mismatched_key_are_refused() {
        let key = ecdsa();
        let leaf = issue(&req("leaf"), &key, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap();
        let e = issue(
            &req("x"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: &leaf.tls_crt,
                key_pem: &leaf.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::SignerNotCa), "{e}");
        let ca = self_signed_ca("ca", &ecdsa());
        let e = issue(
            &req("x"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: &ca.tls_crt,
                key_pem: &leaf.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::SignerKeyMismatch), "{e}");
        let e = issue(
            &req("x"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: "not pem",
                key_pem: &leaf.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::BadPem(_)), "{e}");
    }

    #[test]
    fn key_encodings_follow_cert_manager() {
        let ec = ecdsa();
        let pem1 = ec.to_pem(KeyEncoding::Pkcs1).unwrap();
        assert!(pem1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let pem8 = ec.to_pem(KeyEncoding::Pkcs8).unwrap();
        assert!(pem8.starts_with("-----BEGIN PRIVATE KEY-----"));
        // Both read back to the same key.
        assert_eq!(
            PrivateKey::from_pem(&pem1).unwrap().identity(),
            ec.identity()
        );
        assert_eq!(
            PrivateKey::from_pem(&pem8).unwrap().identity(),
            ec.identity()
        );
        // SEC1 names its curve (Go and openssl need it).
        let sec1 = der_of(&pem1);
        let p256_oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(sec1.windows(p256_oid.len()).any(|w| w == p256_oid));

        let ed = generate_key(KeySpec::new(KeyAlgorithm::Ed25519, Some(999)).unwrap()).unwrap();
        assert!(
            ed.to_pem(KeyEncoding::Pkcs1)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(ed.spec().algorithm, KeyAlgorithm::Ed25519);
    }

    #[test]
    fn rsa_key_is_pkcs1_by_default_and_signs_a_verifiable_ca() {
        let key = generate_key(KeySpec::new(KeyAlgorithm::Rsa, None).unwrap()).unwrap();
        assert_eq!(key.spec().size, 2048);
        let pem = key.to_pem(KeyEncoding::Pkcs1).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let back = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(back.identity(), key.identity());
        assert_eq!(back.spec(), key.spec());
        let ca = self_signed_ca("rsa-root", &key);
        let leaf = issue(
            &req("leaf"),
            &ecdsa(),
            Signer::Ca {
                cert_pem: &ca.tls_crt,
                key_pem: &ca.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        let leaf_der = der_of(&leaf.tls_crt);
        let ca_der = der_of(&ca.tls_crt);
        let (_, lx) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, cx) = X509Certificate::from_der(&ca_der).unwrap();
        lx.verify_signature(Some(cx.public_key())).unwrap();
        assert_eq!(
            lx.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.11",
            "sha256WithRSAEncryption"
        );
    }

    #[test]
    fn p384_and_ed25519_keys_issue() {
        let k384 = generate_key(KeySpec::new(KeyAlgorithm::Ecdsa, Some(384)).unwrap()).unwrap();
        assert_eq!(k384.spec().size, 384);
        let out = issue(&req("p384"), &k384, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap();
        let der = der_of(&out.tls_crt);
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        x.verify_signature(None).unwrap();
        assert_eq!(
            x.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.3",
            "ecdsa-with-SHA384"
        );
        let ed = generate_key(KeySpec::new(KeyAlgorithm::Ed25519, None).unwrap()).unwrap();
        let out = issue(&req("ed"), &ed, Signer::SelfSigned, KeyEncoding::Pkcs8).unwrap();
        let der = der_of(&out.tls_crt);
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        x.verify_signature(None).unwrap();
    }

    #[test]
    fn unsupported_sizes_algorithms_usages_and_ips_are_typed_errors() {
        assert!(matches!(
            KeySpec::new(KeyAlgorithm::Rsa, Some(1024)),
            Err(PkiError::UnsupportedKeySize { size: 1024, .. })
        ));
        assert!(matches!(
            KeySpec::new(KeyAlgorithm::Ecdsa, Some(521)),
            Err(PkiError::UnsupportedKeySize { size: 521, .. })
        ));
        assert!(matches!(
            KeyAlgorithm::parse("DSA"),
            Err(PkiError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(KeyAlgorithm::parse("ecdsa").unwrap(), KeyAlgorithm::Ecdsa);
        let key = ecdsa();
        let mut r = req("x");
        r.usages = vec!["teleport".into()];
        assert!(matches!(
            issue(&r, &key, Signer::SelfSigned, KeyEncoding::Pkcs1),
            Err(PkiError::UnknownUsage(u)) if u == "teleport"
        ));
        let mut r = req("x");
        r.ip_addresses = vec!["10.0.0.300".into()];
        assert!(matches!(
            issue(&r, &key, Signer::SelfSigned, KeyEncoding::Pkcs1),
            Err(PkiError::BadIpAddress(_))
        ));
        let mut r = req("x");
        r.duration = SignedDuration::ZERO;
        assert!(matches!(
            issue(&r, &key, Signer::SelfSigned, KeyEncoding::Pkcs1),
            Err(PkiError::NonPositiveDuration(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("garbage"),
            Err(PkiError::BadPem(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(PkiError::BadDer { .. })
        ));
        assert!(matches!(
            KeyEncoding::parse("DER"),
            Err(PkiError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn usages_map_to_key_usage_and_eku() {
        let (ku, eku) = map_usages(
            &[
                "signing".into(),
                "cert sign".into(),
                "crl sign".into(),
                "key agreement".into(),
                "s/mime".into(),
                "ocsp signing".into(),
                "ipsec tunnel".into(),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            ku,
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::KeyAgreement
            ]
        );
        assert_eq!(
            eku,
            [
                ExtendedKeyUsagePurpose::EmailProtection,
                ExtendedKeyUsagePurpose::OcspSigning,
                ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])
            ]
        );
        let (ku, eku) = map_usages(&[], true).unwrap();
        assert_eq!(
            ku,
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::KeyCertSign
            ]
        );
        assert!(eku.is_empty());
    }

    #[test]
    fn serials_are_random_and_positive() {
        let key = ecdsa();
        let a = issue(&req("x"), &key, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap();
        let b = issue(&req("x"), &key, Signer::SelfSigned, KeyEncoding::Pkcs1).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        assert_eq!(a.serial_hex.len(), 32);
        let der = der_of(&a.tls_crt);
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(x.raw_serial_as_string().replace(':', ""), a.serial_hex);
    }

    #[test]
    fn go_durations_parse_and_format() {
        let h = |n: i64| SignedDuration::from_hours(n);
        assert_eq!(parse_go_duration("48h").unwrap(), h(48));
        assert_eq!(parse_go_duration("25h").unwrap(), h(25));
        assert_eq!(parse_go_duration("2160h0m0s").unwrap(), h(2160));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            SignedDuration::from_millis(500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), SignedDuration::ZERO);
        assert_eq!(
            parse_go_duration("-2m").unwrap(),
            SignedDuration::from_mins(-2)
        );
        for bad in ["", "h", "48", "48x", "1h30", "1..5h", "abc", "-"] {
            assert!(
                matches!(parse_go_duration(bad), Err(PkiError::BadDuration(_))),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(format_go_duration(h(48)), "48h0m0s");
        assert_eq!(format_go_duration(SignedDuration::from_mins(90)), "1h30m0s");
        assert_eq!(format_go_duration(SignedDuration::from_secs(25)), "25s");
    }

    #[test]
    fn openssl_verifies_the_chain() {
        // openssl is part of this machine's toolset; x509-parser checks above do the same
        // verification in-process.
        let dir = std::env::temp_dir().join(format!("pki-openssl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = self_signed_ca("root", &ecdsa());
        let mut r = req("leaf.example");
        r.is_ca = true;
        let leaf = issue(
            &r,
            &ecdsa(),
            Signer::Ca {
                cert_pem: &root.tls_crt,
                key_pem: &root.tls_key,
            },
            KeyEncoding::Pkcs1,
        )
        .unwrap();
        std::fs::write(dir.join("ca.crt"), &leaf.ca_crt).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.tls_crt).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.tls_key).unwrap();
        // The certificates are valid from the injected "now", not from the wall clock.
        let at = (now().as_second() + 3600).to_string();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-attime", &at, "-CAfile"])
            .arg(dir.join("ca.crt"))
            .arg(dir.join("tls.crt"))
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The SEC1 key is readable by openssl and matches the certificate.
        let key_out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.join("tls.key"))
            .output()
            .unwrap();
        let cert_out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(dir.join("tls.crt"))
            .output()
            .unwrap();
        assert!(key_out.status.success());
        assert_eq!(key_out.stdout, cert_out.stdout);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn openssl(args: &[&str], dir: &std::path::Path) -> std::process::Output {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    #[test]
    fn a_ca_made_by_openssl_signs_leaves_openssl_accepts() {
        // UTF8String subjects, a multi-attribute DN, and both RSA key encodings.
        let dir = std::env::temp_dir().join(format!("pki-openssl-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for (keyopts, traditional) in [
            (
                vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                false,
            ),
            (vec!["-newkey", "rsa:2048"], false),
            (vec!["-newkey", "rsa:2048"], true),
        ] {
            let mut args = vec!["req", "-x509", "-nodes", "-days", "3650"];
            args.extend(keyopts.iter().copied());
            args.extend([
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/C=FR/O=Acme Ltd/OU=Platform/CN=Acme Root CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args, &dir);
            if traditional {
                openssl(
                    &["pkey", "-in", "ca.key", "-traditional", "-out", "ca1.key"],
                    &dir,
                );
                std::fs::rename(dir.join("ca1.key"), dir.join("ca.key")).unwrap();
            }
            let ca_crt = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
            let ca_key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
            assert_eq!(
                ca_key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
                traditional
            );
            // openssl's notBefore is the wall clock; issue the leaf inside the CA's validity.
            let ca_info = parse_certificate_pem(&ca_crt).unwrap();
            assert!(ca_info.is_ca && ca_info.is_self_issued());
            assert_eq!(ca_info.common_name.as_deref(), Some("Acme Root CA"));
            let mut r = req("svc.example");
            r.now = ca_info.not_before;
            r.dns_names = vec!["svc.example".into()];
            let leaf = issue(
                &r,
                &ecdsa(),
                Signer::Ca {
                    cert_pem: &ca_crt,
                    key_pem: &ca_key,
                },
                KeyEncoding::Pkcs8,
            )
            .unwrap();
            assert_eq!(leaf.ca_crt, pem_encode("CERTIFICATE", &ca_info.der));
            std::fs::write(dir.join("tls.crt"), &leaf.tls_crt).unwrap();
            let at_leaf = (ca_info.not_before.as_second() + 60).to_string();
            openssl(
                &[
                    "verify", "-attime", &at_leaf, "-CAfile", "ca.crt", "tls.crt",
                ],
                &dir,
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
