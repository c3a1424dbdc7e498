//! The Kafka broker of the `kafka` and `raw-rdkafka` rows: `$COMMS_BENCH_KAFKA` when set,
//! else a fresh [`Tansu`] child process (in memory, on a free loopback port), one per row
//! group so both groups start from the same empty broker; killed on drop. With neither, the
//! rows are skipped with the reason.

use comms_test_support::{Tansu, TansuStore};

/// A broker to measure against.
#[derive(Debug)]
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    _child: Option<Tansu>,
}

/// `$COMMS_BENCH_KAFKA` if it answers, else a started tansu; `Err(reason)` otherwise.
pub async fn broker() -> Result<Broker, String> {
    if let Ok(bootstrap) = std::env::var("COMMS_BENCH_KAFKA") {
        crate::probe::tcp(&bootstrap).await?;
        return Ok(Broker {
            bootstrap,
            _child: None,
        });
    }
    if comms_test_support::tansu::tansu_binary().is_err() {
        return Err("no broker: set COMMS_BENCH_KAFKA, or install tansu (cargo install tansu --locked --features dynostore,libsql)".into());
    }
    let tansu = Tansu::start_with(TansuStore::Memory)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Broker {
        bootstrap: tansu.bootstrap(),
        _child: Some(tansu),
    })
}
