//! A master key inside an HSM, through PKCS#11 (tested against SoftHSM2).
//!
//! The key is an AES-256 secret key object on the token, created non-extractable and
//! sensitive (`palisade secret hsm-keygen`); wrapping and unwrapping data keys are
//! `C_Encrypt`/`C_Decrypt` with `CKM_AES_GCM` (96-bit IV, 128-bit tag, the data key's
//! associated data), so the master key never leaves the device.

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11 as Cryptoki};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{MasterKey, Pkcs11, SecretError};

/// A master key held by a PKCS#11 token.
pub struct Pkcs11MasterKey {
    session: Mutex<Session>,
    key: ObjectHandle,
    id: String,
    _context: Cryptoki,
}

impl std::fmt::Debug for Pkcs11MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn err(what: &str) -> impl Fn(cryptoki::error::Error) -> SecretError + '_ {
    move |e| SecretError::MasterKey(format!("pkcs11 {what}: {e}"))
}

/// Opens the token named in `cfg` and logs in as its user.
fn login(cfg: &Pkcs11) -> Result<(Cryptoki, Session), SecretError> {
    let context = Cryptoki::new(&cfg.module).map_err(err("load module"))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => return Err(err("initialize")(e)),
    }
    let slot = context
        .get_slots_with_token()
        .map_err(err("slots"))?
        .into_iter()
        .find(|s| {
            context
                .get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == cfg.token)
        })
        .ok_or_else(|| {
            SecretError::MasterKey(format!("pkcs11: no token labelled {:?}", cfg.token))
        })?;
    let session = context.open_rw_session(slot).map_err(err("session"))?;
    let pin_path = &cfg.pin_file;
    let pin = Zeroizing::new(
        std::fs::read_to_string(pin_path)
            .map_err(|e| SecretError::MasterKey(format!("{}: {e}", pin_path.display())))?,
    );
    let pin = AuthPin::from(pin.trim_end().to_string());
    session
        .login(UserType::User, Some(&pin))
        .map_err(err("login"))?;
    Ok((context, session))
}

fn template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

impl Pkcs11MasterKey {
    /// Opens the key `cfg` names.
    ///
    /// # Errors
    ///
    /// When the module, token, PIN or key cannot be used.
    pub fn open(cfg: &Pkcs11) -> Result<Self, SecretError> {
        let (context, session) = login(cfg)?;
        let mut found = session
            .find_objects(&template(&cfg.key))
            .map_err(err("find key"))?;
        if found.len() != 1 {
            return Err(SecretError::MasterKey(format!(
                "pkcs11: {} AES keys labelled {:?} on token {:?} (want 1)",
                found.len(),
                cfg.key,
                cfg.token
            )));
        }
        Ok(Pkcs11MasterKey {
            key: found.remove(0),
            session: Mutex::new(session),
            id: format!("pkcs11:{}/{}", cfg.token, cfg.key),
            _context: context,
        })
    }

    /// Creates the AES-256 key on the token: sensitive, not extractable, token-resident.
    ///
    /// # Errors
    ///
    /// When a key with that label exists, or the token refuses.
    pub fn generate(cfg: &Pkcs11) -> Result<Self, SecretError> {
        {
            let (_context, session) = login(cfg)?;
            if !session
                .find_objects(&template(&cfg.key))
                .map_err(err("find key"))?
                .is_empty()
            {
                return Err(SecretError::MasterKey(format!(
                    "pkcs11: key {:?} exists",
                    cfg.key
                )));
            }
            let mut attrs = template(&cfg.key);
            attrs.extend([
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ]);
            session
                .generate_key(&Mechanism::AesKeyGen, &attrs)
                .map_err(err("generate key"))?;
        }
        Self::open(cfg)
    }
}

impl MasterKey for Pkcs11MasterKey {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, data_key: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut iv = [0u8; 12];
        getrandom::fill(&mut iv).expect("the OS random source is available");
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, 128.into()).map_err(err("gcm params"))?;
        let session = self.session.lock().expect("pkcs11 session lock");
        let sealed = session
            .encrypt(&Mechanism::AesGcm(params), self.key, data_key)
            .map_err(err("encrypt"))?;
        let mut out = iv.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if wrapped.len() < 12 + 16 {
            return Err(SecretError::Decrypt);
        }
        let (iv, rest) = wrapped.split_at(12);
        let mut iv = iv.to_vec();
        let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(err("gcm params"))?;
        let session = self.session.lock().expect("pkcs11 session lock");
        session
            .decrypt(&Mechanism::AesGcm(params), self.key, rest)
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Decrypt)
    }
}
