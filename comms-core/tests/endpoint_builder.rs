//! One builder for every kind of transport handle: a backend's own type, a boxed one (what
//! `comms::connect` returns) and a shared `Arc<dyn Transport>`, taken as it is.

use comms_core::Connect;
use std::sync::Arc;

use comms_core::{Endpoint, Transport};
use comms_memory::MemoryTransport;

fn hub() -> String {
    let id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    format!("memory://builder{}?node=n1", &id[id.len() - 10..])
}

#[tokio::test]
async fn every_transport_handle_builds_an_endpoint() {
    let hub = hub();
    let shared: Arc<dyn Transport> = Arc::new(MemoryTransport::connect_url(&hub).await.unwrap());
    let a = Endpoint::builder(shared.clone(), "a")
        .start()
        .await
        .unwrap();
    assert!(
        Arc::ptr_eq(a.transport(), &shared),
        "a shared transport is used as it is, not wrapped again"
    );
    let boxed: Box<dyn Transport> = Box::new(MemoryTransport::connect_url(&hub).await.unwrap());
    let b = Endpoint::builder(boxed, "b").start().await.unwrap();
    let own = Endpoint::builder(MemoryTransport::connect_url(&hub).await.unwrap(), "c")
        .start()
        .await
        .unwrap();
    for ep in [a, b, own] {
        ep.close().await.unwrap();
    }
}
