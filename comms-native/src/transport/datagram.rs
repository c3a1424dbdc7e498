//! [`DatagramTransport`]: the send-only `cdu://ip:port` transport — **one UDP datagram per
//! message**, fire-and-forget, as the Communicator's `cdu:` (cd-wire §1.4, §3).
//!
//! URL: `cdu://host:port?node=NODE&secret=SECRET&max_datagram=1024` (port default 4041).
//! - `secret`: sent as `secret_code=SECRET` in every datagram (the daemon's `udp_secret`
//!   checks it and strips it before routing).
//! - `max_datagram` (default 1024, the daemon's default `udp_max_datagram`): a message whose
//!   serialized line (parameters, `comms_*` fields and secret included) is longer is refused
//!   with [`Error::TooLarge`]; a datagram is never truncated.
//!
//! What it does not do, on purpose (errors, never silent):
//! - **at-least-once**: UDP cannot know whether anyone received a datagram; `send` of an
//!   at-least-once message fails with [`Error::Unsupported`] (mark it
//!   [`Message::at_most_once`], or use `cd:`/`cds:`);
//! - **receiving**: `listen` (so `Endpoint::start`) fails with [`Error::Unsupported`]:
//!   a cdu: transport has no connection for the daemon to answer on. Use it below the
//!   Endpoint: `advertise` (optional) only binds the identity, then `send`.
//!
//! The daemon stamps datagrams `<NODE: ` with no service (it cannot know the sender), so a
//! receiver sees no `from` unless the message is a forward (`comms_from`). A datagram the
//! daemon drops (oversize, bad secret, unparseable, addressed to the daemon) is counted in its
//! stats, never answered.

use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::OnceCell;

use comms_core::backend::{Binding, WireFields, DEFAULT_HOP_LIMIT};
use comms_core::config::{Scheme, TransportUrl};
use comms_core::{
    Address, Advertisement, Capabilities, Connect, Delivery, DeliveryMode, Destination, Error,
    Inbox, Message, Result, Transport,
};

use super::mapping::to_wire;
use cd_wire::{SECRET_CODE_PARAM, UDP_MAX_DATAGRAM};

/// The daemon's default UDP port.
pub const DEFAULT_UDP_PORT: u16 = 4041;

/// Settings of a [`DatagramTransport`], from a `cdu:` URL. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DatagramOptions {
    /// The URL as written, with the secret's value replaced by `***` (for logs and errors).
    pub url: String,
    /// The node name endpoints get (`?node=`; default: the hostname as communicatord makes it).
    pub node: String,
    /// The daemon's UDP host.
    pub host: String,
    /// The daemon's UDP port.
    pub port: u16,
    /// `secret_code` added to every datagram (`?secret=`).
    pub secret: Option<String>,
    /// Largest datagram sent (`?max_datagram=`, default 1024).
    pub max_datagram: usize,
    /// Hop limit for `forward`.
    pub hop_limit: u8,
}

impl std::fmt::Debug for DatagramOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramOptions")
            .field("url", &self.url)
            .field("node", &self.node)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("max_datagram", &self.max_datagram)
            .field("hop_limit", &self.hop_limit)
            .finish()
    }
}

/// The URL with the value of `secret` replaced by `***`.
fn redacted(url: &TransportUrl) -> String {
    if url.query("secret").is_none() {
        return url.as_str().to_owned();
    }
    let mut u = url.url().clone();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "secret" {
                "***".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

impl DatagramOptions {
    /// Options from a configuration: its `cdu:` URL, and `[transport] node` where the URL
    /// names none.
    pub fn from_config(config: &comms_core::Config) -> Result<Self> {
        let url = config.url()?;
        let mut opts = Self::from_url(&url)?;
        opts.node = config.node_for(&url).unwrap_or(opts.node);
        Ok(opts)
    }

    /// Options from a `cdu:` URL.
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        let shown = redacted(url);
        if url.scheme() != Scheme::Cdu {
            return Err(Error::Config(format!(
                "{shown}: expected a cdu://host:port URL"
            )));
        }
        let host = url
            .url()
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Config(format!("{shown}: cdu: needs a host")))?;
        let node = url.node()?;
        let max_datagram = match url.query("max_datagram") {
            None => UDP_MAX_DATAGRAM,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=65_507).contains(n))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{shown}: `max_datagram` must be an integer between 1 and 65507"
                    ))
                })?,
        };
        Ok(Self {
            url: shown,
            node,
            host,
            port: url.url().port().unwrap_or(DEFAULT_UDP_PORT),
            secret: url.query("secret").filter(|s| !s.is_empty()),
            max_datagram,
            hop_limit: DEFAULT_HOP_LIMIT,
        })
    }
}

/// The send-only UDP transport. See the module docs.
#[derive(Debug)]
pub struct DatagramTransport {
    opts: DatagramOptions,
    socket: OnceCell<UdpSocket>,
    binding: Binding,
}

/// The socket is opened on the first send.
#[async_trait]
impl Connect for DatagramTransport {
    async fn connect(config: &comms_core::Config) -> Result<Self> {
        Ok(Self::with_options(DatagramOptions::from_config(config)?))
    }
}

impl DatagramTransport {
    /// A transport with explicit options.
    pub fn with_options(opts: DatagramOptions) -> Self {
        Self {
            binding: Binding::new(opts.node.clone()),
            opts,
            socket: OnceCell::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &DatagramOptions {
        &self.opts
    }

    /// The datagram `msg` becomes: its cd: line, `secret_code` included. Refused (never
    /// truncated) when longer than `max_datagram`.
    pub fn datagram(&self, msg: &Message, origin: Option<&Address>) -> Result<Vec<u8>> {
        let mut wire = to_wire(msg, origin);
        if let Some(secret) = &self.opts.secret {
            wire.params
                .insert(SECRET_CODE_PARAM.to_owned(), secret.clone());
        }
        let line = wire.to_line().map_err(|e| {
            Error::transport("native", "cdu: message cannot be serialized", false, e)
        })?;
        if line.len() > self.opts.max_datagram {
            return Err(Error::TooLarge {
                size: line.len(),
                max: self.opts.max_datagram,
            });
        }
        Ok(line.into_bytes())
    }

    async fn socket(&self) -> Result<&UdpSocket> {
        self.socket
            .get_or_try_init(|| async {
                let io = |what: &str, e: std::io::Error| {
                    Error::transport("native", format!("cdu: {what} {}", self.opts.url), true, e)
                };
                let target: SocketAddr =
                    tokio::net::lookup_host((self.opts.host.as_str(), self.opts.port))
                        .await
                        .map_err(|e| io("cannot resolve", e))?
                        .next()
                        .ok_or_else(|| {
                            Error::Config(format!("{}: host has no address", self.opts.url))
                        })?;
                let local: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .map_err(|_| Error::Config("bad wildcard address".into()))?;
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| io("cannot open a UDP socket for", e))?;
                socket
                    .connect(target)
                    .await
                    .map_err(|e| io("cannot address", e))?;
                Ok(socket)
            })
            .await
    }

    async fn put(&self, msg: &Message, origin: Option<&Address>) -> Result<()> {
        if msg.mode != DeliveryMode::AtMostOnce {
            return Err(Error::Unsupported {
                backend: "native",
                operation: "an at-least-once send on cdu: (UDP is fire-and-forget: mark the \
                            message at_most_once(), or use cd:/cds:)",
            });
        }
        let datagram = self.datagram(msg, origin)?;
        let socket = self.socket().await?;
        match socket.send(&datagram).await {
            Ok(_) => Ok(()),
            // An ICMP "port unreachable" from an earlier datagram: nobody listens. At most
            // once means this message may be lost too; not an error.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::debug!(url = %self.opts.url, "cdu: the daemon's UDP port refused a datagram");
                Ok(())
            }
            Err(e) => Err(Error::transport(
                "native",
                format!("cdu: sending to {}", self.opts.url),
                true,
                e,
            )),
        }
    }
}

#[async_trait]
impl Transport for DatagramTransport {
    /// Binds the identity (node must match); publishes nothing (over UDP the daemon cannot
    /// tell who sent an advertisement).
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        self.binding.bind(ad).map(drop)
    }

    async fn listen(&self) -> Result<Inbox> {
        Err(Error::Unsupported {
            backend: "native",
            operation: "receiving on cdu: (it is send-only: one UDP datagram per message; \
                        use cd: or cds: to receive)",
        })
    }

    /// No `advertise` needed: `from` is stamped when bound. The size limit is the
    /// datagram's, checked on the serialized line ([`DatagramTransport::datagram`]).
    async fn send(&self, mut msg: Message) -> Result<()> {
        self.binding.check_message(&msg, usize::MAX)?;
        msg.set_from(self.binding.address());
        self.binding.counted(self.put(&msg, None).await)
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        self.binding
            .forward(delivery, to, self.opts.hop_limit, |fwd| async move {
                self.binding.counted(self.put(&fwd, fwd.from()).await)
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        self.binding.close();
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new("native");
        caps.max_message_size = self.opts.max_datagram;
        caps.at_most_once = true;
        caps.namespaces = false;
        caps.survives_restart = false;
        caps.hop_limit = self.opts.hop_limit;
        caps
    }

    fn node(&self) -> String {
        self.opts.node.clone()
    }

    fn local_address(&self) -> Option<Address> {
        self.binding.address()
    }

    fn stats(&self) -> Option<std::sync::Arc<comms_core::TransportStats>> {
        Some(self.binding.stats().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_a_hidden_secret() {
        let url =
            TransportUrl::parse("cdu://127.0.0.1?node=n1&secret=hush&max_datagram=512").unwrap();
        let o = DatagramOptions::from_url(&url).unwrap();
        assert_eq!((o.port, o.max_datagram), (DEFAULT_UDP_PORT, 512));
        assert_eq!(o.secret.as_deref(), Some("hush"));
        assert!(
            !o.url.contains("hush") && o.url.contains("secret=***"),
            "{}",
            o.url
        );
        assert!(!format!("{o:?}").contains("hush"));
        let bad = TransportUrl::parse("cdu://127.0.0.1?secret=hush&max_datagram=x").unwrap();
        let e = DatagramOptions::from_url(&bad).unwrap_err().to_string();
        assert!(e.contains("max_datagram") && !e.contains("hush"), "{e}");
    }
}
