//! Dead letters: where a message goes when its handler has failed for the last time, and how
//! an operator inspects, replays or purges it (`commsctl dlq`).
//!
//! The endpoint gives a message up after [`RetryPolicy::max_attempts`](crate::RetryPolicy)
//! failed attempts (see [`crate::retry`]) and puts a [`DeadLetter`] — the whole message, the
//! receiver, the last reason, the attempt count and the time — into its transport's
//! [`DeadLetters`] place ([`Transport::dead_letters`]) **before** it acknowledges the delivery:
//! if the place cannot take it, the delivery stays unacknowledged and the endpoint tries again,
//! so a message is never dropped on the way.
//!
//! | backend | place | durable |
//! |---|---|---|
//! | native (`cd:`, `cds:`) | one JSON file per letter in `<state dir>/dead-letters/` on the receiving host ([`FileDeadLetters`]) | yes (fsync'd, mode 0600) |
//! | RabbitMQ | the durable queue `comms.<ns>.dead` | yes (persistent, confirmed) |
//! | Kafka | the topic `comms.<ns>.deadletter` | yes (acks=all) |
//! | memory | the hub, in the process ([`MemoryDeadLetters`]) | no |
//!
//! [`replay`] sends a dead letter again, to where it was going, as it was sent: same `from`
//! (a reply reaches the original sender), same id, `hops` + 1 (so the receiver's dedup window,
//! which remembers the given-up (id, hops), lets it through).

pub(crate) mod file;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::envelope;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::transport::{Delivery, NoAck, Transport};

pub use file::FileDeadLetters;

/// Largest dead letter read back (an envelope plus the letter's own fields).
pub const MAX_LETTER_BYTES: usize = 8 * 1024 * 1024;

/// One message given up, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The letter's id in its place: the message id, or for a body that was not an envelope
    /// (parked by a broker backend), an id the place gives it.
    pub id: String,
    /// The endpoint that gave it up (`node:service`); none for a body parked by a backend.
    pub receiver: Option<Address>,
    /// The last failure.
    pub reason: String,
    /// Failed attempts (0 for a body parked by a backend).
    pub attempts: u32,
    /// When it was given up, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The message; none when the body was not an envelope.
    pub message: Option<Message>,
    /// A body that was not an envelope (at most 4 KiB of it, as text).
    pub raw: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    #[serde(default)]
    receiver: Option<Address>,
    reason: String,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    at_ms: u64,
    #[serde(default)]
    envelope: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    raw: Option<String>,
}

impl DeadLetter {
    /// The letter for `msg`, given up by `receiver` after `attempts` attempts for `reason`.
    pub fn new(msg: &Message, receiver: Address, reason: impl Into<String>, attempts: u32) -> Self {
        Self {
            id: msg.id.to_string(),
            receiver: Some(receiver),
            reason: reason.into(),
            attempts,
            at_ms: now_ms(),
            message: Some(msg.clone()),
            raw: None,
        }
    }

    /// A record of the place that is not a letter it can read (damaged, or written by another
    /// tool): shown with `id` (the place's own), why, and the first 4 KiB of `body` as text;
    /// it cannot be replayed.
    pub fn unreadable(id: String, why: &Error, body: &[u8]) -> Self {
        Self {
            id,
            receiver: None,
            reason: format!("unreadable dead letter: {why}"),
            attempts: 0,
            at_ms: 0,
            message: None,
            raw: Some(String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned()),
        }
    }

    /// As one JSON object: the letter's fields and the message as its envelope.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let envelope = match &self.message {
            Some(m) => Some(serde_json::value::RawValue::from_string(
                String::from_utf8(envelope::encode(m)?)
                    .map_err(|e| Error::invalid("envelope", e.to_string()))?,
            )?),
            None => None,
        };
        Ok(serde_json::to_vec(&Stored {
            id: self.id.clone(),
            receiver: self.receiver.clone(),
            reason: self.reason.clone(),
            attempts: self.attempts,
            at_ms: self.at_ms,
            envelope,
            raw: self.raw.clone(),
        })?)
    }

    /// Read a letter written by [`DeadLetter::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_LETTER_BYTES {
            return Err(Error::TooLarge {
                size: bytes.len(),
                max: MAX_LETTER_BYTES,
            });
        }
        let stored: Stored = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("dead letter", e.to_string()))?;
        let message = match &stored.envelope {
            Some(raw) => Some(envelope::decode(raw.get().as_bytes(), MAX_LETTER_BYTES)?),
            None => None,
        };
        Ok(Self {
            id: stored.id,
            receiver: stored.receiver,
            reason: stored.reason,
            attempts: stored.attempts,
            at_ms: stored.at_ms,
            message,
            raw: stored.raw,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A durable place for dead letters (see the module docs for each backend's).
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Keep `letter`. `Ok` only once it is durable.
    async fn put(&self, letter: &DeadLetter) -> Result<()>;
    /// The oldest `limit` letters, oldest first, left in place.
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>>;
    /// Remove the letter `id` and return it (`None` when there is none).
    async fn take(&self, id: &str) -> Result<Option<DeadLetter>>;
    /// Remove every letter; how many there were.
    async fn purge(&self) -> Result<usize>;
    /// Where the letters are, for people (`directory /var/lib/...`, `queue comms.prod.dead`).
    fn place(&self) -> String;
}

/// Send a dead letter's message again to where it was going: `from` and `id` kept, `hops` + 1
/// (see the module docs). A letter without a message (a body that was not an envelope)
/// cannot be replayed.
pub async fn replay(transport: &dyn Transport, letter: &DeadLetter) -> Result<()> {
    let Some(msg) = letter.message.clone() else {
        return Err(Error::invalid(
            "dead letter",
            format!(
                "{} holds no comms message; it cannot be replayed",
                letter.id
            ),
        ));
    };
    let to = msg.to.clone();
    transport
        .forward(Delivery::new(msg, false, Box::new(NoAck)), to)
        .await
}

/// Dead letters kept in memory (the memory backend's place): gone with the process.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl MemoryDeadLetters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DeadLetter>> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<()> {
        self.lock().push(letter.clone());
        Ok(())
    }
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self.lock().iter().take(limit).cloned().collect())
    }
    async fn take(&self, id: &str) -> Result<Option<DeadLetter>> {
        let mut letters = self.lock();
        Ok(letters
            .iter()
            .position(|l| l.id == id)
            .map(|i| letters.remove(i)))
    }
    async fn purge(&self) -> Result<usize> {
        let mut letters = self.lock();
        let n = letters.len();
        letters.clear();
        Ok(n)
    }
    fn place(&self) -> String {
        "memory (this process)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Destination;

    #[test]
    fn a_letter_round_trips_as_json() {
        let msg = Message::new("WORK", Destination::Service("s".into()))
            .unwrap()
            .with_param("k", "v");
        let letter = DeadLetter::new(&msg, Address::new("n1", "s").unwrap(), "boom", 3);
        let back = DeadLetter::from_json(&letter.to_json().unwrap()).unwrap();
        assert_eq!(back, letter);
        assert!(DeadLetter::from_json(b"[]").is_err());
        assert!(DeadLetter::from_json(b"{\"id\":\"x\",\"reason\":\"r\",\"envelope\":{}}").is_err());
    }

    #[tokio::test]
    async fn memory_place_takes_and_purges() {
        let place = MemoryDeadLetters::default();
        let msg = Message::new("WORK", Destination::Service("s".into())).unwrap();
        let letter = DeadLetter::new(&msg, Address::new("n1", "s").unwrap(), "boom", 3);
        place.put(&letter).await.unwrap();
        assert_eq!(place.list(10).await.unwrap(), vec![letter.clone()]);
        assert_eq!(place.take(&letter.id).await.unwrap(), Some(letter.clone()));
        assert_eq!(place.take(&letter.id).await.unwrap(), None);
        place.put(&letter).await.unwrap();
        assert_eq!(place.purge().await.unwrap(), 1);
    }
}
