//! Sensitive values at rest: a Secret's `data` / `stringData` and any value marked sensitive
//! are never stored in clear.
//!
//! [`StateCipher::protect`] splits an object body into a *redacted* body, where each sensitive
//! value is replaced by a marker `(sensitive:HEX)` (HEX: a keyed blake3 digest of the value,
//! so changes can be detected without decrypting, and values cannot be guessed offline
//! without the key), and a *sealed* blob: the original values, as JSON, encrypted with
//! XChaCha20-Poly1305 under the state key and a random nonce. [`StateCipher::reveal`] puts
//! them back.
//!
//! The key (32 bytes, base64) comes from `MESHPLAN_STATE_KEY`, or (local states) from the
//! file `state.key` beside the database, created with mode 0600 when absent. A state in the
//! cluster takes its key from the variable only ([`StateCipher::from_env`]); without one it
//! stores bodies that hold nothing sensitive and refuses the others
//! ([`StateError::NoKey`]): a sensitive value is never written in the clear.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StateError;

/// Environment variable holding the state key (32 bytes, base64).
pub const KEY_ENV: &str = "MESHPLAN_STATE_KEY";
/// The key file created beside the database when the variable is not set.
pub const KEY_FILE: &str = "state.key";

const AAD: &[u8] = b"meshplan state sealed value v1";
const NONCE_LEN: usize = 24;

/// The marker prefix that replaces sensitive values.
pub const SENSITIVE_PREFIX: &str = "(sensitive";

/// An object body as the state keeps it: the redacted body (safe to show) and, when the
/// object had sensitive values, those values encrypted. Built only by [`StateCipher::protect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectedBody {
    redacted: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

impl ProtectedBody {
    /// The body with every sensitive value replaced by its marker.
    pub fn redacted(&self) -> &Value {
        &self.redacted
    }

    /// The sealed values: base64 of a 24-byte nonce followed by the XChaCha20-Poly1305
    /// ciphertext of a JSON map from JSON pointer to original value.
    pub fn sealed(&self) -> Option<&str> {
        self.sealed.as_deref()
    }

    /// Whether sensitive values were sealed away.
    pub fn has_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// A body with nothing sensitive in it, kept as is. Fails (returns None) when the body
    /// holds values that must be protected; use [`StateCipher::protect`] then.
    pub fn plain(body: Value) -> Option<Self> {
        sensitive_paths(&body, &[]).is_empty().then_some(Self {
            redacted: body,
            sealed: None,
        })
    }
}

/// Where the key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            Self::Env => KEY_ENV.to_owned(),
            Self::File(p) => p.display().to_string(),
        }
    }
}

/// Encrypts and decrypts the sensitive values of one state.
#[derive(Clone)]
pub struct StateCipher {
    /// None: no key was given (a state in the cluster without `MESHPLAN_STATE_KEY`).
    keys: Option<Keys>,
    state_path: PathBuf,
}

#[derive(Clone)]
struct Keys {
    aead: XChaCha20Poly1305,
    digest_key: [u8; 32],
    check: String,
    source: KeySource,
}

impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCipher")
            .field("source", &self.keys.as_ref().map(|k| &k.source))
            .finish_non_exhaustive()
    }
}

impl StateCipher {
    /// Loads the key for the state directory `dir`: `MESHPLAN_STATE_KEY` if set, else
    /// `dir/state.key`; when that file is absent, it is created (mode 0600) with a fresh
    /// random key if `create` (a new state), else [`StateError::MissingKey`].
    pub fn load(dir: &Path, create: bool) -> Result<Self, StateError> {
        match std::env::var(KEY_ENV) {
            Ok(text) => Self::from_base64(&text, KeySource::Env, dir),
            Err(std::env::VarError::NotUnicode(_)) => Err(StateError::BadKey {
                source_name: KEY_ENV.to_owned(),
                message: "not valid text".to_owned(),
            }),
            Err(std::env::VarError::NotPresent) => Self::load_file(dir, create),
        }
    }

    /// The key from `MESHPLAN_STATE_KEY` when set, else a cipher without a key (see the
    /// module docs). `place` names the state in errors.
    pub fn from_env(place: &Path) -> Result<Self, StateError> {
        match std::env::var(KEY_ENV) {
            Ok(text) => Self::from_base64(&text, KeySource::Env, place),
            Err(std::env::VarError::NotUnicode(_)) => Err(StateError::BadKey {
                source_name: KEY_ENV.to_owned(),
                message: "not valid text".to_owned(),
            }),
            Err(std::env::VarError::NotPresent) => Ok(Self {
                keys: None,
                state_path: place.to_path_buf(),
            }),
        }
    }

    fn load_file(dir: &Path, create: bool) -> Result<Self, StateError> {
        let path = dir.join(KEY_FILE);
        let io = |action, source| StateError::Io {
            action,
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                check_mode(&path)?;
                Self::from_base64(&text, KeySource::File(path.clone()), dir)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
                Err(StateError::MissingKey { path: path.clone() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let text = format!("{}\n", B64.encode(key));
                write_private(&path, text.as_bytes()).map_err(|e| io("create the key file", e))?;
                Self::from_base64(&text, KeySource::File(path.clone()), dir)
            }
            Err(e) => Err(io("read the key file", e)),
        }
    }

    /// A cipher from a base64 key (for tests and callers with their own key handling).
    pub fn from_base64(text: &str, source: KeySource, dir: &Path) -> Result<Self, StateError> {
        let bad = |message: String| StateError::BadKey {
            source_name: source.describe(),
            message,
        };
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| bad(format!("not base64 ({e})")))?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("{} bytes, 32 expected", bytes.len())))?;
        let digest_key = blake3::derive_key("meshplan state sensitive value digest v1", &key);
        let check = blake3::keyed_hash(
            &blake3::derive_key("meshplan state key check v1", &key),
            b"meshplan",
        )
        .to_hex()
        .to_string();
        Ok(Self {
            keys: Some(Keys {
                aead: XChaCha20Poly1305::new(&key.into()),
                digest_key,
                check,
                source,
            }),
            state_path: dir.to_path_buf(),
        })
    }

    /// A value derived from the key that identifies it without revealing it; None without
    /// a key.
    pub fn key_check(&self) -> Option<&str> {
        self.keys.as_ref().map(|k| k.check.as_str())
    }

    /// Where the key came from; None without a key.
    pub fn source(&self) -> Option<&KeySource> {
        self.keys.as_ref().map(|k| &k.source)
    }

    /// The keyed digest marker of one sensitive value: `(sensitive:HEX)`; without a key,
    /// an unkeyed digest (such a cipher never stores the value).
    pub fn marker(&self, value: &Value) -> String {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let digest = match &self.keys {
            Some(k) => blake3::keyed_hash(&k.digest_key, &bytes).to_hex(),
            None => blake3::hash(&bytes).to_hex(),
        };
        format!("{SENSITIVE_PREFIX}:{})", &digest[..32])
    }

    /// Splits `body` into its redacted form and the sealed sensitive values. Sensitive: every
    /// value under `data` and `stringData` of a `v1` `Secret`, plus the values at the JSON
    /// pointers `extra` (e.g. `/spec/password`; `""` marks the whole body: only apiVersion,
    /// kind and metadata stay in clear).
    pub fn protect(&self, body: &Value, extra: &[&str]) -> Result<ProtectedBody, StateError> {
        let paths = sensitive_paths(body, extra);
        if paths.is_empty() {
            return Ok(ProtectedBody {
                redacted: body.clone(),
                sealed: None,
            });
        }
        let Some(keys) = &self.keys else {
            return Err(StateError::NoKey {
                path: self.state_path.clone(),
            });
        };
        let mut redacted = body.clone();
        let mut secrets = serde_json::Map::new();
        for path in paths {
            if path.is_empty() {
                // The whole body: keep the identity, seal everything else.
                if let Value::Object(map) = &mut redacted {
                    let keys: Vec<String> = map
                        .keys()
                        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                        .cloned()
                        .collect();
                    for k in keys {
                        if let Some(v) = map.get(&k).cloned() {
                            let marker = self.marker(&v);
                            secrets.insert(format!("/{}", escape(&k)), v);
                            map.insert(k, Value::String(marker));
                        }
                    }
                }
                continue;
            }
            if let Some(slot) = redacted.pointer_mut(&path) {
                let original = std::mem::take(slot);
                *slot = Value::String(self.marker(&original));
                secrets.insert(path, original);
            }
        }
        let plain = serde_json::to_vec(&Value::Object(secrets)).map_err(|_| self.encrypt_err())?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut sealed = nonce.to_vec();
        sealed.extend(
            keys.aead
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plain,
                        aad: AAD,
                    },
                )
                .map_err(|_| self.encrypt_err())?,
        );
        Ok(ProtectedBody {
            redacted,
            sealed: Some(B64.encode(sealed)),
        })
    }

    /// The original body: the redacted body with its sealed values put back.
    pub fn reveal(&self, body: &ProtectedBody) -> Result<Value, StateError> {
        let mut out = body.redacted.clone();
        let Some(sealed) = &body.sealed else {
            return Ok(out);
        };
        let err = || StateError::Decrypt {
            path: self.state_path.clone(),
        };
        let Some(keys) = &self.keys else {
            return Err(StateError::KeyRequired {
                path: self.state_path.clone(),
            });
        };
        let bytes = B64.decode(sealed).map_err(|_| err())?;
        if bytes.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = keys
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: AAD,
                },
            )
            .map_err(|_| err())?;
        let secrets: serde_json::Map<String, Value> =
            serde_json::from_slice(&plain).map_err(|_| err())?;
        for (path, value) in secrets {
            if let Some(slot) = out.pointer_mut(&path) {
                *slot = value;
            }
        }
        Ok(out)
    }

    fn encrypt_err(&self) -> StateError {
        StateError::Encrypt {
            path: self.state_path.clone(),
        }
    }
}

/// Whether a string is a sensitive-value marker.
pub fn is_marker(text: &str) -> bool {
    text.starts_with(SENSITIVE_PREFIX) && text.ends_with(')')
}

/// JSON pointers of the sensitive values of `body`, sorted.
fn sensitive_paths(body: &Value, extra: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let is_secret = body.get("kind").and_then(Value::as_str) == Some("Secret")
        && body.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if is_secret {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = body.get(field) {
                out.extend(map.keys().map(|k| format!("/{field}/{}", escape(k))));
            }
        }
    }
    for p in extra {
        if p.is_empty() || body.pointer(p).is_some() {
            out.push((*p).to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn check_mode(path: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| StateError::Io {
            action: "read the key file",
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StateError::KeyFileMode {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cipher() -> StateCipher {
        StateCipher::from_base64(&B64.encode([7u8; 32]), KeySource::Env, Path::new("/x")).unwrap()
    }

    #[test]
    fn secret_values_are_redacted_sealed_and_revealed() {
        let c = cipher();
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "linkerd"},
            "data": {"tls.crt": "Y2VydA==", "a/b": "c2VjcmV0LXZhbHVlLXg="},
            "stringData": {"password": "hunter2"}
        });
        let p = c.protect(&secret, &[]).unwrap();
        assert!(p.has_sealed());
        let text = serde_json::to_string(&p).unwrap();
        // Clear values long enough that random ciphertext cannot contain them by chance.
        for clear in ["Y2VydA==", "c2VjcmV0LXZhbHVlLXg=", "hunter2"] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
        let marker = p.redacted()["stringData"]["password"].as_str().unwrap();
        assert!(is_marker(marker), "{marker}");
        assert_eq!(p.redacted()["metadata"]["name"], "s");
        assert_eq!(c.reveal(&p).unwrap(), secret);
        // Same value, same marker; a different value, another marker.
        let again = c.protect(&secret, &[]).unwrap();
        assert_eq!(again.redacted(), p.redacted());
        assert_ne!(c.marker(&json!("hunter3")), c.marker(&json!("hunter2")));
    }

    #[test]
    fn extra_paths_and_whole_bodies_are_sealed() {
        let c = cipher();
        let body = json!({"apiVersion": "x/v1", "kind": "Cfg", "metadata": {"name": "n"},
                          "spec": {"token": "abc123", "port": 1}});
        let p = c.protect(&body, &["/spec/token", "/spec/missing"]).unwrap();
        assert!(
            p.redacted()["spec"]["token"]
                .as_str()
                .is_some_and(is_marker)
        );
        assert_eq!(p.redacted()["spec"]["port"], 1);
        assert_eq!(c.reveal(&p).unwrap(), body);
        let whole = c.protect(&body, &[""]).unwrap();
        assert!(!serde_json::to_string(&whole).unwrap().contains("abc123"));
        assert!(whole.redacted()["spec"].as_str().is_some_and(is_marker));
        assert_eq!(c.reveal(&whole).unwrap(), body);
    }

    #[test]
    fn wrong_key_and_tampering_fail_to_decrypt() {
        let c = cipher();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                            "data": {"k": "dg=="}});
        let p = c.protect(&secret, &[]).unwrap();
        let other =
            StateCipher::from_base64(&B64.encode([8u8; 32]), KeySource::Env, Path::new("/x"))
                .unwrap();
        assert!(matches!(other.reveal(&p), Err(StateError::Decrypt { .. })));
        assert_ne!(other.key_check(), c.key_check());
        // Without a key: plain bodies pass, sensitive ones are refused, sealed ones unread.
        let none = StateCipher {
            keys: None,
            state_path: PathBuf::from("/x"),
        };
        assert!(matches!(
            none.protect(&secret, &[]),
            Err(StateError::NoKey { .. })
        ));
        let plain = json!({"kind": "ConfigMap", "data": {"a": "b"}});
        assert!(!none.protect(&plain, &[]).unwrap().has_sealed());
        assert!(matches!(
            none.reveal(&p),
            Err(StateError::KeyRequired { .. })
        ));
        let mut tampered = p.clone();
        if let Some(s) = &mut tampered.sealed {
            s.replace_range(40..44, "AAAA");
        }
        assert!(c.reveal(&tampered).is_err());
        assert!(ProtectedBody::plain(secret).is_none());
        assert!(ProtectedBody::plain(json!({"kind": "ConfigMap", "data": {"a": "b"}})).is_some());
    }

    #[test]
    fn bad_keys_are_refused() {
        let d = Path::new("/x");
        assert!(matches!(
            StateCipher::from_base64("not base64!", KeySource::Env, d),
            Err(StateError::BadKey { .. })
        ));
        assert!(matches!(
            StateCipher::from_base64(&B64.encode([1u8; 16]), KeySource::Env, d),
            Err(StateError::BadKey { .. })
        ));
    }
}
