//! A stock Communicator service (raw socket, plain lines, no `comms_` parameters) and a comms
//! endpoint over the native transport exchange messages through a real `commsd`, both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use comms_core::Connect;
use std::time::Duration;

use client_util::{Commsd, Raw, WAIT};
use comms_core::{Address, Endpoint, Message, Outcome, Request};
use comms_native::transport::NativeTransport;
use tokio::sync::mpsc;

#[tokio::test]
async fn stock_service_and_comms_endpoint_talk_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "interop").await;

    let (seen_tx, mut seen) = mpsc::channel::<Message>(16);
    let transport = NativeTransport::connect_url(&daemon.url()).await.unwrap();
    let ep = Endpoint::builder(transport, "comms_svc")
        .handle("PING", move |req: Request| {
            let seen = seen_tx.clone();
            async move {
                let _ = seen.send(req.message().clone()).await;
                let mut pong = req.reply("PONG")?;
                pong.params = req.message().params.clone();
                Ok(Outcome::Reply(pong))
            }
        })
        .start()
        .await
        .unwrap();

    let mut stock = Raw::register(&daemon.socket, "stock", "HELP,NEWS,PONG,READY,STOP").await;

    // Stock → comms: a plain line, no comms_ parameters at all.
    stock.send("comms_svc/PING n=1;text=\"a;b\"").await;
    let got = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.param("n"), Some("1"));
    assert_eq!(got.param("text"), Some("a;b"));
    assert_eq!(got.from(), Some(&Address::new("interop", "stock").unwrap()));
    assert_eq!(
        got.mode,
        comms_core::DeliveryMode::AtMostOnce,
        "no comms_id: at-most-once"
    );

    // The endpoint's reply reaches the stock service, stamped, once (a stock peer never
    // acknowledges, so the transport sends to it at-most-once and never resends).
    let pong = stock.recv_command("PONG").await;
    assert_eq!(
        (
            pong.sent_from_server.as_str(),
            pong.sent_from_service.as_str()
        ),
        ("interop", "comms_svc")
    );
    assert_eq!(pong.param("n"), Some("1"));
    assert!(pong.param("comms_seq").is_none(), "{pong:?}");

    // Comms → stock: a message from the endpoint arrives as a plain stamped line.
    let news = Message::new("NEWS", Address::new("interop", "stock").unwrap())
        .unwrap()
        .with_param("headline", "x;y=\"z\"\nline2");
    let news_id = news.id().clone();
    ep.send(news).await.unwrap();
    let line = stock.recv_command("NEWS").await;
    assert_eq!(line.sent_from_service, "comms_svc");
    assert_eq!(line.param("headline"), Some("x;y=\"z\"\nline2"));
    assert_eq!(line.param("comms_id"), Some(news_id.as_str()));

    // No resend of either message reaches the stock service within a few ack timeouts.
    stock.send("comms_svc/PING n=2").await;
    let pong2 = stock.recv_command("PONG").await;
    assert_eq!(pong2.param("n"), Some("2"));
    let extra = tokio::time::timeout(Duration::from_millis(2500), stock.recv()).await;
    assert!(extra.is_err(), "unexpected extra line: {extra:?}");

    ep.close().await.unwrap();
}
