//! Values only fleet key holders can read, and tokens derived from the key (see "Sealed
//! values" in [`crate::auth`]): [`FleetKey::seal`] / [`FleetKey::open`] (HMAC-SHA256 in counter
//! mode as the key stream, an HMAC-SHA256 tag over nonce and ciphertext, both keys derived from
//! the fleet key, a random nonce per value), and the daemon admin and web-view tokens.

use hmac::Mac;

use crate::auth::{hex, unhex, AuthError, FleetKey, HmacSha256, MAX_SEALED};

const SEAL_ENC: &[u8] = b"comms-fleet-seal-enc-v1";
const SEAL_MAC: &[u8] = b"comms-fleet-seal-mac-v1";
const DAEMON_ADMIN: &[u8] = b"comms-embedded-commsd-admin-token-v1";
const WEB_VIEW: &[u8] = b"comms-server-web-view-token-v1";
const NONCE_LEN: usize = 16;

/// HMAC-SHA256 of the length-prefixed `parts` under `key`.
pub(crate) fn prf(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// XORs `data` with the key stream of `enc_key` and `nonce` (HMAC-SHA256 in counter mode).
fn apply_stream(enc_key: &[u8], nonce: &[u8], data: &mut [u8]) {
    for (n, chunk) in data.chunks_mut(32).enumerate() {
        let block = prf(enc_key, &[nonce, &(n as u64).to_be_bytes()]);
        for (b, k) in chunk.iter_mut().zip(block) {
            *b ^= k;
        }
    }
}

impl FleetKey {
    /// The admin token of the daemon a server with this key embeds: HMAC-SHA256 of the current
    /// key over a fixed label, hex (64 digits). `commsctl sniff` derives the same from the key
    /// it finds and sends it as `SNIFF admin_token=`; the daemon never holds the key itself,
    /// and the token reveals nothing of it. Rotating the key rotates the token.
    pub fn daemon_admin_token(&self) -> String {
        hex(&prf(self.current(), &[DAEMON_ADMIN]))
    }

    /// The token of the server's web view when it is served off loopback (over TLS): a PRF
    /// of the current key over its own label, hex (64 digits); `commsctl web-token` prints
    /// it. Like the admin token it reveals nothing of the key and rotates with it.
    pub fn web_view_token(&self) -> String {
        hex(&prf(self.current(), &[WEB_VIEW]))
    }

    /// Encrypts and authenticates `plain` with the current key (see the module docs):
    /// `s1.<nonce>.<ciphertext>.<tag>`, hex. At most [`MAX_SEALED`] bytes.
    pub fn seal(&self, plain: &[u8]) -> Result<String, AuthError> {
        if plain.len() > MAX_SEALED {
            return Err(AuthError::Sealed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| AuthError::Sealed)?;
        Ok(Self::seal_with(self.current(), &nonce, plain))
    }

    pub(crate) fn seal_with(key: &[u8], nonce: &[u8], plain: &[u8]) -> String {
        let (enc, mac) = (prf(key, &[SEAL_ENC]), prf(key, &[SEAL_MAC]));
        let mut data = plain.to_vec();
        apply_stream(&enc, nonce, &mut data);
        let tag = prf(&mac, &[nonce, &data]);
        format!("s1.{}.{}.{}", hex(nonce), hex(&data), hex(&tag))
    }

    /// The plain bytes of a value made by [`FleetKey::seal`] with this key or a previous one.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let mut parts = sealed.split('.');
        let (Some("s1"), Some(nonce), Some(data), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Sealed);
        };
        let max = 2 * MAX_SEALED;
        let (nonce, data, tag) = match (unhex(nonce, max), unhex(data, max), unhex(tag, max)) {
            (Some(n), Some(d), Some(t)) if n.len() == NONCE_LEN && t.len() == 32 => (n, d, t),
            _ => return Err(AuthError::Sealed),
        };
        for key in &self.0 {
            let mac = prf(key, &[SEAL_MAC]);
            let mut check = match HmacSha256::new_from_slice(&mac) {
                Ok(m) => m,
                Err(_) => unreachable!("HMAC takes keys of any length"),
            };
            for p in [&nonce[..], &data[..]] {
                check.update(&(p.len() as u64).to_be_bytes());
                check.update(p);
            }
            if check.verify_slice(&tag).is_ok() {
                let mut plain = data.clone();
                apply_stream(&prf(key, &[SEAL_ENC]), &nonce, &mut plain);
                return Ok(plain);
            }
        }
        Err(AuthError::Sealed)
    }
}
