//! Signed fleet requests: who may run commands on agents (and ask the server to).
//!
//! The transport-stamped origin (`from`) is trustworthy on the native backend (the daemon
//! stamps it and refuses a second live instance of a name), but on a broker any client can
//! write any envelope. A **fleet key** closes that gap on every backend alike: the server
//! signs each `RUN`/`CANCEL` it sends to an agent, `commsctl` signs each request it sends to
//! the server, and the receiver refuses what is unsigned, badly signed, stale or replayed.
//!
//! The signature is the `auth` parameter, `v1.<issued unix ms>.<hex HMAC-SHA256>`, over
//! (length-prefixed, so no two inputs collide): a domain tag, the command, the destination's
//! service name (a RUN signed for `agent_a` is refused by `agent_b`), the message id, the
//! issue time, and every other parameter sorted by name. `from`, delivery mode and TTL are
//! not signed: the transport sets them. A message is accepted within [`MAX_SKEW`] of its issue
//! time and at most once: a [`ReplayGuard`] remembers the ids it accepted for that long
//! (bounded: at most [`REPLAY_CAPACITY`] ids; when full, the oldest are forgotten early).
//! [`FleetAuth`] holds both for one endpoint: it signs what the endpoint sends and admits what
//! it receives.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comms_core::{Destination, Message};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The parameter that carries the signature.
pub const AUTH_PARAM: &str = "auth";
/// How far a signed message's issue time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Ids a [`ReplayGuard`] remembers at most.
pub const REPLAY_CAPACITY: usize = 100_000;
const DOMAIN: &[u8] = b"comms-fleet-auth-v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a signed request was refused. The message never includes the key or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The key file could not be used.
    #[error("fleet key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No `auth` parameter.
    #[error("unsigned request: this endpoint requires requests signed with the fleet key")]
    Missing,
    /// `auth` is not `v1.<ms>.<hex>`.
    #[error("malformed auth parameter")]
    Malformed,
    /// The signature does not match (other key, or the message was altered).
    #[error("bad signature: not signed with this fleet's key, or altered")]
    BadSignature,
    /// Issued too long ago or in the future.
    #[error("stale request: issued {skew_s} s away from this host's clock (limit {limit_s} s)")]
    Stale {
        /// Distance between the issue time and now, in seconds.
        skew_s: u64,
        /// [`MAX_SKEW`] in seconds.
        limit_s: u64,
    },
    /// This message id was already accepted.
    #[error("replayed request: message id already accepted")]
    Replayed,
    /// Signed for another destination.
    #[error("signed for `{signed_for}`, not for this endpoint")]
    WrongDestination {
        /// The service the signature names.
        signed_for: String,
    },
}

/// The shared secret of a fleet. `Debug` never shows it.
#[derive(Clone)]
pub struct FleetKey(Vec<u8>);

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetKey(<redacted>)")
    }
}

impl FleetKey {
    /// Shortest accepted key, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from its bytes (at least [`FleetKey::MIN_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, AuthError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(AuthError::Key {
                path: "<bytes>".into(),
                reason: format!("shorter than {} bytes", Self::MIN_LEN),
            });
        }
        Ok(Self(bytes))
    }

    /// Reads a key file: its content without surrounding whitespace (e.g. the output of
    /// `openssl rand -hex 32`), at least [`FleetKey::MIN_LEN`] bytes.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let err = |reason: String| AuthError::Key {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(err("larger than 4 KiB: not a key file".into()));
        }
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key = text.trim_ascii();
        if key.len() < Self::MIN_LEN {
            return Err(err(format!("shorter than {} bytes", Self::MIN_LEN)));
        }
        Ok(Self(key.to_vec()))
    }

    fn mac(&self, msg: &Message, service: &str, issued_ms: u64) -> HmacSha256 {
        // `new_from_slice` accepts keys of any length for HMAC.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        let mut field = |b: &[u8]| {
            mac.update(&(b.len() as u64).to_be_bytes());
            mac.update(b);
        };
        field(DOMAIN);
        field(msg.command.as_bytes());
        field(service.as_bytes());
        field(msg.id.to_string().as_bytes());
        field(issued_ms.to_string().as_bytes());
        for (k, v) in msg.params.iter().filter(|(k, _)| k.as_str() != AUTH_PARAM) {
            field(k.as_bytes());
            field(v.as_bytes());
        }
        mac
    }

    /// Signs `msg` for its destination, issued now. Replaces any previous `auth`.
    pub fn sign(&self, msg: &mut Message) {
        self.sign_at(msg, now_ms());
    }

    /// [`FleetKey::sign`] with an explicit issue time (tests).
    pub fn sign_at(&self, msg: &mut Message, issued_ms: u64) {
        let service = destination_service(&msg.to);
        let tag = self.mac(msg, &service, issued_ms).finalize().into_bytes();
        let value = format!("v1.{issued_ms}.{}", hex(&tag));
        msg.params.insert(AUTH_PARAM.to_owned(), value);
    }

    /// Checks `msg`'s signature, that it was signed for `me` (this endpoint's service name)
    /// and that it is fresh. Does not check replays: see [`ReplayGuard::check`].
    pub fn verify(&self, msg: &Message, me: &str, now_ms: u64) -> Result<u64, AuthError> {
        let value = msg.param(AUTH_PARAM).ok_or(AuthError::Missing)?;
        let mut parts = value.splitn(3, '.');
        let (Some("v1"), Some(issued), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let issued: u64 = issued.parse().map_err(|_| AuthError::Malformed)?;
        let sig = unhex(sig).ok_or(AuthError::Malformed)?;
        let signed_for = destination_service(&msg.to);
        self.mac(msg, &signed_for, issued)
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        if signed_for != me {
            return Err(AuthError::WrongDestination { signed_for });
        }
        let skew = now_ms.abs_diff(issued);
        if skew > MAX_SKEW.as_millis() as u64 {
            return Err(AuthError::Stale {
                skew_s: skew / 1000,
                limit_s: MAX_SKEW.as_secs(),
            });
        }
        Ok(issued)
    }
}

/// Remembers accepted message ids for [`MAX_SKEW`] so that a captured signed message cannot
/// be played again. Bounded by [`REPLAY_CAPACITY`].
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    capacity: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::with_capacity(REPLAY_CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard that remembers at most `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Verifies `msg` with `key` for `me`, then records its id; a second time is `Replayed`.
    pub fn check(&mut self, key: &FleetKey, msg: &Message, me: &str) -> Result<(), AuthError> {
        let now = now_ms();
        key.verify(msg, me, now)?;
        let horizon = now.saturating_sub(2 * MAX_SKEW.as_millis() as u64);
        while let Some((t, _)) = self.order.front() {
            if *t >= horizon && self.order.len() < self.capacity {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
        let id = msg.id.to_string();
        if self.seen.contains_key(&id) {
            return Err(AuthError::Replayed);
        }
        self.seen.insert(id.clone(), now);
        self.order.push_back((now, id));
        Ok(())
    }
}

/// One endpoint's fleet key and the ids it already accepted: signs what the endpoint sends,
/// admits what it receives (signed for it, fresh, once). Shared by the endpoint's handlers.
#[derive(Debug)]
pub struct FleetAuth {
    key: FleetKey,
    guard: Mutex<ReplayGuard>,
}

impl FleetAuth {
    /// `key`, with an empty [`ReplayGuard`] of the default capacity.
    pub fn new(key: FleetKey) -> Self {
        Self {
            key,
            guard: Mutex::default(),
        }
    }

    /// Signs `msg` for its destination, issued now ([`FleetKey::sign`]).
    pub fn sign(&self, msg: &mut Message) {
        self.key.sign(msg);
    }

    /// Whether `msg` is signed with the key for `me` (this endpoint's service name), fresh,
    /// and not accepted before ([`ReplayGuard::check`]).
    pub fn admit(&self, msg: &Message, me: &str) -> Result<(), AuthError> {
        self.guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(&self.key, msg, me)
    }
}

/// The service a destination names (`*` for broadcasts).
fn destination_service(to: &Destination) -> String {
    to.service_name().unwrap_or("*").to_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> FleetKey {
        FleetKey::new(vec![b; 32]).unwrap()
    }

    fn run_for(service: &str) -> Message {
        Message::new("RUN", Destination::Service(service.into()))
            .unwrap()
            .with_param("task", "t1")
            .with_param("argv", r#"["true"]"#)
    }

    #[test]
    fn a_signed_request_verifies_once_and_only_for_its_destination() {
        let k = key(1);
        let mut m = run_for("agent_a");
        k.sign(&mut m);
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(&k, &m, "agent_a"), Ok(()));
        assert_eq!(guard.check(&k, &m, "agent_a"), Err(AuthError::Replayed));
        assert!(matches!(
            key(1).verify(&m, "agent_b", now_ms()),
            Err(AuthError::WrongDestination { .. })
        ));
    }

    #[test]
    fn unsigned_wrong_key_altered_stale_and_malformed_are_refused() {
        let k = key(1);
        let now = now_ms();
        assert_eq!(k.verify(&run_for("a"), "a", now), Err(AuthError::Missing));

        let mut m = run_for("a");
        key(2).sign(&mut m);
        assert_eq!(k.verify(&m, "a", now), Err(AuthError::BadSignature));

        let mut m = run_for("a");
        k.sign(&mut m);
        m.params.insert("argv".into(), r#"["rm","-rf","/"]"#.into());
        assert_eq!(k.verify(&m, "a", now), Err(AuthError::BadSignature));

        let mut m = run_for("a");
        k.sign(&mut m);
        m.params.insert("extra".into(), "added".into());
        assert_eq!(k.verify(&m, "a", now), Err(AuthError::BadSignature));

        let mut m = run_for("a");
        k.sign_at(&mut m, now - 10 * 60 * 1000);
        assert!(matches!(
            k.verify(&m, "a", now),
            Err(AuthError::Stale { .. })
        ));

        for bad in [
            "",
            "v1",
            "v2.1.00",
            "v1.x.00",
            "v1.1.zz",
            "v1.1.0",
            "v1.1.ÿÿ",
        ] {
            let m = run_for("a").with_param(AUTH_PARAM, bad);
            assert_eq!(k.verify(&m, "a", now), Err(AuthError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn key_files_are_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "  0123456789abcdef0123456789abcdef\n").unwrap();
        let k = FleetKey::from_file(&p).unwrap();
        assert_eq!(format!("{k:?}"), "FleetKey(<redacted>)");
        std::fs::write(&p, "short").unwrap();
        assert!(FleetKey::from_file(&p).is_err());
        assert!(FleetKey::from_file(&dir.path().join("missing")).is_err());
        std::fs::write(&p, vec![b'a'; 10_000]).unwrap();
        assert!(FleetKey::from_file(&p).is_err());
    }

    #[test]
    fn fleet_auth_signs_and_admits_once() {
        let sender = FleetAuth::new(key(4));
        let receiver = FleetAuth::new(key(4));
        let mut m = run_for("agent_a");
        sender.sign(&mut m);
        assert_eq!(receiver.admit(&m, "agent_a"), Ok(()));
        assert_eq!(receiver.admit(&m, "agent_a"), Err(AuthError::Replayed));
        assert_eq!(
            FleetAuth::new(key(5)).admit(&m, "agent_a"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn replay_guard_is_bounded() {
        let k = key(3);
        let mut g = ReplayGuard::with_capacity(100);
        for _ in 0..110 {
            let mut m = run_for("a");
            k.sign(&mut m);
            g.check(&k, &m, "a").unwrap();
        }
        assert!(g.seen.len() <= 100 && g.order.len() <= 100);
    }
}
