//! Ed25519 keys in PEM files, as MCUboot's `imgtool keygen -t ed25519` writes them (PKCS#8
//! `PRIVATE KEY`) and `imgtool getpub -e pem` exports them (SPKI `PUBLIC KEY`).
//!
//! Private key material is never printed: [`SigningKey`]'s `Debug` shows the public key hash.

use std::fmt;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};

use crate::TrustedKey;

/// A key file problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read key file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// Not an Ed25519 key in a form we read.
    #[error(
        "{path} is not an Ed25519 key in PEM form ({why}); generate one with \
         `imgtool keygen -k KEY.pem -t ed25519`, or export the public half with `imgtool getpub -k KEY.pem -e pem`"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said (never key material).
        why: String,
    },
    /// A public key was given where signing needs the private key.
    #[error("{path} holds a public key only; signing needs the private key file (BEGIN PRIVATE KEY)")]
    PublicOnly {
        /// The file.
        path: PathBuf,
    },
}

/// An Ed25519 signing key loaded from a PEM file.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    path: PathBuf,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: the file and the public key hash only.
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("key_hash", &hex(&self.trusted().hash[..8]))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Load a PKCS#8 PEM private key.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let text = read(path)?;
        Self::from_pem(&text, path)
    }

    /// Parse PKCS#8 PEM text (`path` names it in errors).
    pub fn from_pem(text: &str, path: &Path) -> Result<SigningKey, KeyError> {
        if text.contains("BEGIN PUBLIC KEY") {
            return Err(KeyError::PublicOnly { path: path.to_path_buf() });
        }
        let inner = ed25519_dalek::SigningKey::from_pkcs8_pem(text)
            .map_err(|e| KeyError::Format { path: path.to_path_buf(), why: e.to_string() })?;
        Ok(SigningKey { inner, path: path.to_path_buf() })
    }

    /// The public half, as the bootloader trusts it.
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey::new(self.inner.verifying_key().to_bytes())
    }

    /// Sign a 32-byte digest (Ed25519 over the digest, as imgtool does without `--pure`).
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.inner.sign(digest).to_bytes()
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Load the public key from a PEM file holding either the private key or the public key.
pub fn load_public(path: &Path) -> Result<TrustedKey, KeyError> {
    let text = read(path)?;
    if text.contains("BEGIN PUBLIC KEY") {
        let k = ed25519_dalek::VerifyingKey::from_public_key_pem(&text)
            .map_err(|e| KeyError::Format { path: path.to_path_buf(), why: e.to_string() })?;
        return Ok(TrustedKey::new(k.to_bytes()));
    }
    Ok(SigningKey::from_pem(&text, path)?.trusted())
}

fn read(path: &Path) -> Result<String, KeyError> {
    let bytes = std::fs::read(path).map_err(|error| KeyError::Read { path: path.to_path_buf(), error })?;
    String::from_utf8(bytes)
        .map_err(|_| KeyError::Format { path: path.to_path_buf(), why: "binary, not a PEM text file".into() })
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)
    }

    #[test]
    fn loads_imgtool_keys_and_debug_never_shows_the_secret() {
        let k = SigningKey::load(&fixture("test-ed25519-a.pem")).unwrap();
        let dbg = format!("{k:?}");
        let secret = hex(&k.inner.to_bytes());
        assert!(!dbg.contains(&secret), "{dbg}");
        assert!(dbg.contains("key_hash"), "{dbg}");
        let b = load_public(&fixture("test-ed25519-b.pem")).unwrap();
        assert_ne!(k.trusted(), b);
    }

    #[test]
    fn public_pem_round_trip_and_errors_name_the_file_and_fix() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let k = SigningKey::load(&fixture("test-ed25519-a.pem")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pubf = dir.path().join("pub.pem");
        let pem = k.inner.verifying_key().to_public_key_pem(Default::default()).unwrap();
        std::fs::write(&pubf, pem).unwrap();
        assert_eq!(load_public(&pubf).unwrap(), k.trusted());
        let e = SigningKey::load(&pubf).unwrap_err();
        assert!(matches!(e, KeyError::PublicOnly { .. }), "{e}");

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let e = SigningKey::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.pem") && e.contains("imgtool keygen"), "{e}");
        let e = SigningKey::load(&dir.path().join("missing.pem")).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
