//! The requester side of the server protocol (what `commsctl` uses).

use std::time::Duration;

use comms::{Destination, Endpoint, Message, Outcome, Request, Transport};
use comms_fleet::auth::FleetKey;
use comms_fleet::control::{
    cmd, Accepted, AgentInfo, DispatchRecord, DispatchRequest, ServerStatus, TargetOutput,
    TargetResult, SERVER_SERVICE,
};
use tokio::sync::mpsc;

/// What arrives for a running dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chunk of output from one target.
    Output(TargetOutput),
    /// One target's result.
    Result(TargetResult),
    /// All targets have a result.
    Done(DispatchRecord),
}

/// A connected client of the server.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    events: mpsc::Receiver<Event>,
    timeout: Duration,
    key: Option<FleetKey>,
}

fn server() -> Destination {
    Destination::Service(SERVER_SERVICE.into())
}

impl Client {
    /// Connect as `service` (unique per client, e.g. `commsctl_<pid>`).
    pub async fn connect(
        transport: Box<dyn Transport>,
        service: &str,
        timeout: Duration,
    ) -> comms::Result<Client> {
        let (tx, events) = mpsc::channel(1024);
        let forward = |wrap: fn(&Message) -> comms::Result<Event>| {
            let tx = tx.clone();
            move |req: Request| {
                let tx = tx.clone();
                async move {
                    let event = wrap(req.message())?;
                    // A full channel waits: the server is slowed, nothing is dropped.
                    let _ = tx.send(event).await;
                    Ok(Outcome::Done)
                }
            }
        };
        let endpoint = Endpoint::builder(transport, service)
            .handle(
                cmd::TARGET_OUTPUT,
                forward(|m| Ok(Event::Output(m.data()?))),
            )
            .handle(
                cmd::TARGET_RESULT,
                forward(|m| Ok(Event::Result(m.data()?))),
            )
            .handle(cmd::DISPATCH_DONE, forward(|m| Ok(Event::Done(m.data()?))))
            .start()
            .await?;
        Ok(Client {
            endpoint,
            events,
            timeout,
            key: None,
        })
    }

    /// Sign every request with the fleet key (a server with a key answers only signed ones).
    pub fn with_key(mut self, key: FleetKey) -> Self {
        self.key = Some(key);
        self
    }

    async fn request(&self, mut msg: Message) -> comms::Result<Message> {
        if let Some(key) = &self.key {
            key.sign(&mut msg);
        }
        self.endpoint.request(msg, self.timeout).await
    }

    /// The endpoint (for `send`).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn ask(&self, command: &str) -> comms::Result<Message> {
        self.request(Message::new(command, server())?).await
    }

    /// Every page of a paged list (`AGENTS`, `RESULTS`).
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        command: &str,
    ) -> comms::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut offset = 0usize;
        loop {
            let reply = self
                .request(Message::new(command, server())?.with_param("offset", offset.to_string()))
                .await?;
            let mut page: Vec<T> = reply.data()?;
            let got = page.len();
            items.append(&mut page);
            match reply.param("next").and_then(|n| n.parse::<usize>().ok()) {
                // A next page must move forward, or a confused server would loop us forever.
                Some(n) if n > offset && got > 0 => offset = n,
                _ => return Ok(items),
            }
        }
    }

    /// Every agent the server knows.
    pub async fn agents(&self) -> comms::Result<Vec<AgentInfo>> {
        self.all_pages(cmd::AGENTS).await
    }

    /// The server's status.
    pub async fn status(&self) -> comms::Result<ServerStatus> {
        self.ask(cmd::SERVER_STATUS).await?.data()
    }

    /// Recent dispatches.
    pub async fn results(&self) -> comms::Result<Vec<DispatchRecord>> {
        self.all_pages(cmd::RESULTS).await
    }

    /// Start a dispatch; then read [`Client::next_event`] until `Done`.
    pub async fn dispatch(&self, request: &DispatchRequest) -> comms::Result<Accepted> {
        let msg = Message::new(cmd::DISPATCH, server())?.with_data(request)?;
        self.request(msg).await?.data()
    }

    /// Cancel a dispatch's running tasks; the number of tasks the server cancelled.
    pub async fn cancel(&self, dispatch: &str) -> comms::Result<usize> {
        let msg = Message::new(cmd::CANCEL_DISPATCH, server())?.with_param("dispatch", dispatch);
        let reply = self.request(msg).await?;
        Ok(reply
            .param("tasks")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// Whether the server answers a status request within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> comms::Result<()> {
        let mut msg = Message::new(cmd::SERVER_STATUS, server())?;
        if let Some(key) = &self.key {
            key.sign(&mut msg);
        }
        self.endpoint.request(msg, timeout).await.map(|_| ())
    }

    /// The next event of any dispatch this client started (`None` if the endpoint stopped).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Close.
    pub async fn close(self) -> comms::Result<()> {
        self.endpoint.close().await
    }
}
