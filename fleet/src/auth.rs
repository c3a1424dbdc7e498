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
//! it receives. A guard given a file ([`ReplayGuard::persistent`], the agent's
//! `<state_dir>/replay-guard`, the server's `<state_dir>/replay-guard`) appends each accepted id
//! with its time and reads them back at start, so a restart does not reopen the window.
//!
//! **Key files and rotation.** A key file holds one key per line: the first is the current
//! key (it signs), the others are previous keys, still accepted when verifying. To rotate
//! without downtime: put `new` above `old` in every agent's file, then in the server's and
//! commsctl's, then drop `old` everywhere.
//!
//! **Sealed values** ([`FleetKey::seal`], [`FleetKey::open`]): what must not be readable by a
//! client that may sniff the transport (the values of a task's `secret_env`) travels as
//! `s1.<nonce>.<ciphertext>.<tag>` (hex): HMAC-SHA256 in counter mode as the key stream and an
//! HMAC-SHA256 tag over nonce and ciphertext (encrypt-then-MAC), both keys derived from the
//! fleet key; a random 16-byte nonce per value. Only fleet key holders can read it.
//!
//! **Where the key is found** ([`find_key_file`]): an explicit file (`--key-file`,
//! `COMMS_FLEET_KEY_FILE`, `key_file` in the config), else [`default_key_path`], the file the
//! `server` creates on its first start in its state directory, so that `agent` and `commsctl`
//! on the same host (same working directory, or the same `COMMS_SERVER_STATE_DIR`) find it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comms_core::{Destination, Message};

pub use crate::replay::ReplayGuard;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The parameter that carries the signature.
pub const AUTH_PARAM: &str = "auth";
/// How far a signed message's issue time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Ids a [`ReplayGuard`] remembers at most.
pub const REPLAY_CAPACITY: usize = 100_000;
const DOMAIN: &[u8] = b"comms-fleet-auth-v1";
/// Longest value [`FleetKey::seal`] takes (a sealed value must fit in one message).
pub const MAX_SEALED: usize = 16 * 1024;
/// The environment variable naming a fleet key file (`--key-file` of every binary).
pub const KEY_FILE_ENV: &str = "COMMS_FLEET_KEY_FILE";
/// The environment variable naming the server's state directory (`--state-dir` of `server`).
pub const STATE_DIR_ENV: &str = "COMMS_SERVER_STATE_DIR";
/// The server's state directory when nothing names one (relative to the working directory).
pub const DEFAULT_STATE_DIR: &str = "server-state";
/// The name of the key file the server creates in its state directory.
pub const KEY_FILE_NAME: &str = "fleet.key";
/// The name of a persistent replay guard's file in a state directory.
pub const REPLAY_GUARD_FILE: &str = "replay-guard";

/// Where the server keeps (and, keyless, creates) its fleet key by default:
/// `$COMMS_SERVER_STATE_DIR/fleet.key`, else `./server-state/fleet.key`.
pub fn default_key_path() -> PathBuf {
    let dir = std::env::var_os(STATE_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
    dir.join(KEY_FILE_NAME)
}

/// The fleet key file to use: `explicit` (a flag, `COMMS_FLEET_KEY_FILE` or the config) if
/// given, else [`default_key_path`] if that file exists; `None` when there is none.
pub fn find_key_file(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(default_key_path()).filter(|p| p.is_file()),
    }
}

pub(crate) type HmacSha256 = Hmac<Sha256>;

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
    /// A sealed value is malformed, altered, or sealed with another key.
    #[error("sealed value: malformed, altered, or not sealed with this fleet's key")]
    Sealed,
    /// The persistent replay guard could not be read or written (the request is refused:
    /// accepting it unrecorded would let it be replayed after a restart).
    #[error("replay guard {path}: {reason}")]
    Guard {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The shared secret of a fleet: the current key (it signs) and any previous keys still
/// accepted during a rotation. `Debug` never shows them.
#[derive(Clone)]
pub struct FleetKey(pub(crate) Vec<Vec<u8>>);

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
        Ok(Self(vec![bytes]))
    }

    /// This key, also accepting `previous` when verifying (a rotation in progress).
    pub fn with_previous(mut self, previous: FleetKey) -> Self {
        self.0.extend(previous.0);
        self
    }

    /// How many keys are accepted (1 + the previous keys).
    pub fn accepted(&self) -> usize {
        self.0.len()
    }

    /// Reads a key file: one key per non-empty line, without surrounding whitespace (e.g. the
    /// output of `openssl rand -hex 32`), each at least [`FleetKey::MIN_LEN`] bytes. The first
    /// line is the current key; the others are previous keys, accepted but never used to sign.
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
        let mut keys = Vec::new();
        for (n, line) in text.split(|b| *b == b'\n').enumerate() {
            let key = line.trim_ascii();
            if key.is_empty() {
                continue;
            }
            if key.len() < Self::MIN_LEN {
                return Err(err(format!(
                    "line {}: shorter than {} bytes",
                    n + 1,
                    Self::MIN_LEN
                )));
            }
            keys.push(key.to_vec());
        }
        if keys.is_empty() {
            return Err(err("empty: no key".into()));
        }
        Ok(Self(keys))
    }

    pub(crate) fn current(&self) -> &[u8] {
        self.0.first().map_or(&[], Vec::as_slice)
    }

    fn mac(key: &[u8], msg: &Message, service: &str, issued_ms: u64) -> HmacSha256 {
        // `new_from_slice` accepts keys of any length for HMAC.
        let mut mac = match HmacSha256::new_from_slice(key) {
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
        field(msg.id().to_string().as_bytes());
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
        let tag = Self::mac(self.current(), msg, &service, issued_ms)
            .finalize()
            .into_bytes();
        let value = format!("v1.{issued_ms}.{}", hex(&tag));
        msg.params.insert(AUTH_PARAM.to_owned(), value);
    }

    /// Checks `msg`'s signature (by the current or a previous key), that it was signed for
    /// `me` (this endpoint's service name) and that it is fresh. Does not check replays: see
    /// [`ReplayGuard::check`].
    pub fn verify(&self, msg: &Message, me: &str, now_ms: u64) -> Result<u64, AuthError> {
        let value = msg.param(AUTH_PARAM).ok_or(AuthError::Missing)?;
        let mut parts = value.splitn(3, '.');
        let (Some("v1"), Some(issued), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let issued: u64 = issued.parse().map_err(|_| AuthError::Malformed)?;
        let sig = unhex(sig, 128).ok_or(AuthError::Malformed)?;
        let signed_for = destination_service(&msg.to);
        let signed = self.0.iter().any(|k| {
            Self::mac(k, msg, &signed_for, issued)
                .verify_slice(&sig)
                .is_ok()
        });
        if !signed {
            return Err(AuthError::BadSignature);
        }
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

/// One endpoint's fleet key and the ids it already accepted: signs what the endpoint sends,
/// admits what it receives (signed for it, fresh, once). Shared by the endpoint's handlers.
#[derive(Debug)]
pub struct FleetAuth {
    key: FleetKey,
    guard: Mutex<ReplayGuard>,
}

impl FleetAuth {
    /// `key`, with an empty in-memory [`ReplayGuard`] of the default capacity.
    pub fn new(key: FleetKey) -> Self {
        Self {
            key,
            guard: Mutex::default(),
        }
    }

    /// `key`, with a [`ReplayGuard::persistent`] guard kept in `guard_file`.
    pub fn persistent(key: FleetKey, guard_file: &Path) -> Result<Self, AuthError> {
        Ok(Self {
            key,
            guard: Mutex::new(ReplayGuard::persistent(guard_file, REPLAY_CAPACITY)?),
        })
    }

    /// Signs `msg` for its destination, issued now ([`FleetKey::sign`]).
    pub fn sign(&self, msg: &mut Message) {
        self.key.sign(msg);
    }

    /// Opens a sealed value ([`FleetKey::open`]).
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, AuthError> {
        self.key.open(sealed)
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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of lowercase or uppercase hex `s` of at most `max` digits.
pub(crate) fn unhex(s: &str, max: usize) -> Option<Vec<u8>> {
    if s.len() > max {
        return None;
    }
    hex::decode(s).ok()
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
    fn a_key_file_of_several_lines_signs_with_the_first_and_accepts_all() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = ("n".repeat(32), "o".repeat(32));
        let p = dir.path().join("k");
        std::fs::write(&p, format!("{new}\n\n  {old}  \n")).unwrap();
        let both = FleetKey::from_file(&p).unwrap();
        assert_eq!(both.accepted(), 2);
        let now = now_ms();
        for signer in [&new, &old] {
            let mut m = run_for("a");
            FleetKey::new(signer.as_bytes()).unwrap().sign(&mut m);
            assert!(both.verify(&m, "a", now).is_ok());
        }
        let mut m = run_for("a");
        both.sign(&mut m);
        let only_new = FleetKey::new(new.as_bytes()).unwrap();
        let only_old = FleetKey::new(old.as_bytes()).unwrap();
        assert!(
            only_new.verify(&m, "a", now).is_ok(),
            "signed with the first line"
        );
        assert_eq!(only_old.verify(&m, "a", now), Err(AuthError::BadSignature));
        assert!(only_new
            .clone()
            .with_previous(only_old)
            .verify(&m, "a", now)
            .is_ok());
        std::fs::write(&p, format!("{new}\nshort\n")).unwrap();
        let e = FleetKey::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&p, "\n \n").unwrap();
        assert!(FleetKey::from_file(&p).is_err());
    }

    #[test]
    fn a_persistent_guard_refuses_a_replay_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/replay-guard");
        let k = key(6);
        let mut m = run_for("a");
        k.sign(&mut m);
        let mut other = run_for("a");
        k.sign(&mut other);
        {
            let mut g = ReplayGuard::persistent(&file, 100).unwrap();
            assert_eq!(g.check(&k, &m, "a"), Ok(()));
        }
        // A stale line and garbage are dropped at the next start.
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str("1 ancient\nnot a line\n");
        std::fs::write(&file, text).unwrap();
        let mut g = ReplayGuard::persistent(&file, 100).unwrap();
        assert_eq!(g.check(&k, &m, "a"), Err(AuthError::Replayed));
        assert_eq!(g.check(&k, &other, "a"), Ok(()));
        drop(g);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("ancient") && !text.contains("not a line"),
            "{text}"
        );
        let mut g = ReplayGuard::persistent(&file, 100).unwrap();
        assert_eq!(g.check(&k, &other, "a"), Err(AuthError::Replayed));
        // An in-memory guard forgets at a restart (what this replaces).
        assert_eq!(ReplayGuard::default().check(&k, &m, "a"), Ok(()));
    }

    #[test]
    fn a_persistent_guard_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("replay-guard");
        let k = key(7);
        let mut g = ReplayGuard::persistent(&file, 10).unwrap();
        for _ in 0..35 {
            let mut m = run_for("a");
            k.sign(&mut m);
            g.check(&k, &m, "a").unwrap();
        }
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 2 * 10 + 1, "{lines} lines");
        let g = ReplayGuard::persistent(&file, 10).unwrap();
        assert!(g.order.len() <= 10);
    }

    #[test]
    fn the_default_key_path_follows_the_server_state_dir() {
        // Only this test touches the variable in this crate's tests.
        std::env::remove_var(STATE_DIR_ENV);
        assert_eq!(default_key_path(), Path::new("server-state/fleet.key"));
        std::env::set_var(STATE_DIR_ENV, "/srv/comms");
        assert_eq!(default_key_path(), Path::new("/srv/comms/fleet.key"));
        assert_eq!(find_key_file(None), None, "not there: not found");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE_NAME), "x".repeat(32)).unwrap();
        std::env::set_var(STATE_DIR_ENV, dir.path());
        assert_eq!(find_key_file(None), Some(dir.path().join(KEY_FILE_NAME)));
        let explicit = Path::new("/elsewhere/k");
        assert_eq!(find_key_file(Some(explicit)), Some(explicit.to_path_buf()));
        std::env::remove_var(STATE_DIR_ENV);
    }

    #[test]
    fn sealed_values_open_only_with_the_fleet_key_and_hide_the_plain_text() {
        let (old, new) = (key(8), key(9));
        let plain = b"TOKEN=correct horse battery staple, longer than one 32-byte block";
        let sealed = old.seal(plain).unwrap();
        assert!(sealed.starts_with("s1."), "{sealed}");
        assert!(!sealed.contains("correct") && !sealed.contains(&hex(b"correct")));
        assert_ne!(old.seal(plain).unwrap(), sealed, "a fresh nonce each time");
        assert_eq!(old.open(&sealed).unwrap(), plain);
        assert_eq!(new.open(&sealed), Err(AuthError::Sealed));
        let rotated = new.clone().with_previous(old.clone());
        assert_eq!(
            rotated.open(&sealed).unwrap(),
            plain,
            "a previous key opens"
        );
        // Any flipped digit (nonce, data or tag) is refused.
        for at in [3, 40, sealed.len() - 1] {
            let mut bytes = sealed.clone().into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(old.open(&altered), Err(AuthError::Sealed), "{at}");
        }
        for bad in ["", "s1", "s2.00.00.00", "s1.zz.00.00", "s1.00.00.00.00"] {
            assert_eq!(old.open(bad), Err(AuthError::Sealed), "{bad:?}");
        }
        assert_eq!(old.open(&old.seal(b"").unwrap()).unwrap(), b"");
        assert!(old.seal(&vec![0; MAX_SEALED + 1]).is_err());
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

    #[test]
    fn the_web_view_token_is_its_own() {
        let k = FleetKey::new(b"0123456789abcdef0123".to_vec()).unwrap();
        let t = k.web_view_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, k.daemon_admin_token());
    }

    #[test]
    fn daemon_admin_token_is_derived_from_the_current_key_only() {
        let k = FleetKey::new(b"0123456789abcdef0123".to_vec()).unwrap();
        let t = k.daemon_admin_token();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!t.contains("0123456789abcdef"));
        let other = FleetKey::new(b"fedcba9876543210fedc".to_vec()).unwrap();
        assert_ne!(other.daemon_admin_token(), t);
        assert_eq!(k.clone().with_previous(other).daemon_admin_token(), t);
    }
}
