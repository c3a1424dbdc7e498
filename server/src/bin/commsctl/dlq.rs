//! `commsctl dlq`: the dead letters of the transport (messages whose handler failed for the
//! last time), listed, shown, replayed or purged; needs no server. Where they are depends on
//! the backend (`comms::dead_letter`): a queue (RabbitMQ), a topic (Kafka), or files in the
//! state directory of this host (native: run it on the receiving host, as the receiving
//! service's user, or give it the same `[transport] state_dir` / `COMMS_STATE_DIR`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use comms::dead_letter::{self, now_ms, DeadLetter, DeadLetters};
use comms::{Address, Advertisement, Transport};

use crate::cli::DlqAction;
use crate::{out, Exit};

/// Most letters listed or replayed by one command.
const MOST: usize = 10_000;

fn matches(letter: &DeadLetter, service: Option<&str>) -> bool {
    let Some(want) = service else {
        return true;
    };
    letter
        .receiver
        .as_ref()
        .is_some_and(|r| r.service() == want || r.to_string() == want)
}

fn summary(l: &DeadLetter) -> serde_json::Value {
    let m = l.message.as_ref();
    serde_json::json!({
        "id": l.id,
        "receiver": l.receiver.as_ref().map(ToString::to_string),
        "command": m.map(|m| m.command.clone()),
        "from": m.and_then(|m| m.from().map(ToString::to_string)),
        "to": m.map(|m| m.to.to_string()),
        "attempts": l.attempts,
        "reason": l.reason,
        "at_ms": l.at_ms,
    })
}

fn print_line(l: &DeadLetter) {
    let m = l.message.as_ref();
    let age = now_ms().saturating_sub(l.at_ms) / 1000;
    println!(
        "{}  {}s ago  {} -> {}  {}  attempts={}  {}",
        l.id,
        age,
        m.and_then(|m| m.from().map(ToString::to_string))
            .unwrap_or_else(|| "-".into()),
        l.receiver
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "-".into()),
        m.map(|m| m.command.as_str()).unwrap_or("-"),
        l.attempts,
        l.reason
    );
}

async fn taken(place: &dyn DeadLetters, id: &str) -> anyhow::Result<DeadLetter> {
    place
        .take(id)
        .await
        .with_context(|| format!("reading the dead letters ({})", place.place()))?
        .ok_or_else(|| Exit(2, format!("no dead letter `{id}` in {}", place.place())).into())
}

/// Send `letter` again; put it back if that fails.
async fn replay_one(
    transport: &dyn Transport,
    place: &dyn DeadLetters,
    letter: DeadLetter,
) -> anyhow::Result<()> {
    if let Err(e) = dead_letter::replay(transport, &letter).await {
        place.put(&letter).await.with_context(|| {
            format!(
                "putting back dead letter {} after a failed replay",
                letter.id
            )
        })?;
        return Err(anyhow::anyhow!("replaying {}: {e}", letter.id));
    }
    Ok(())
}

/// `commsctl dlq ...`. `wait`: how long a replay waits for its messages to be confirmed.
pub async fn run(
    transport: Box<dyn Transport>,
    me: &str,
    action: DlqAction,
    json: bool,
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    let place = transport.dead_letters()?;
    let place = &*place;
    match action {
        DlqAction::List { service, limit } => {
            let letters = place.list(MOST).await.context("reading the dead letters")?;
            let letters: Vec<_> = letters
                .iter()
                .filter(|l| matches(l, service.as_deref()))
                .take(limit)
                .collect();
            for l in &letters {
                if json {
                    out::line("dead_letter", &summary(l));
                } else {
                    print_line(l);
                }
            }
            out::note(
                json,
                &format!("{} dead letters in {}", letters.len(), place.place()),
            );
        }
        DlqAction::Show { id } => {
            let letters = place.list(MOST).await.context("reading the dead letters")?;
            let Some(l) = letters.into_iter().find(|l| l.id == id) else {
                return Err(Exit(2, format!("no dead letter `{id}` in {}", place.place())).into());
            };
            let mut v = summary(&l);
            if let Some(m) = &l.message {
                v["params"] = serde_json::to_value(&m.params)?;
                v["hops"] = m.hops().into();
                v["correlation"] = m.correlation.as_ref().map(ToString::to_string).into();
            }
            if let Some(raw) = &l.raw {
                v["raw"] = raw.clone().into();
            }
            if json {
                out::line("dead_letter", &v);
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        DlqAction::Replay { id, all, service } => {
            // Forwarding needs an identity on some backends (the daemon's REGISTER).
            let me = Address::new(transport.node(), me)?;
            transport
                .advertise(&Advertisement::new(me, Vec::<String>::new()))
                .await?;
            let ids: Vec<String> = match (id, all) {
                (Some(id), _) => vec![id],
                (None, _) => place
                    .list(MOST)
                    .await?
                    .into_iter()
                    .filter(|l| matches(l, service.as_deref()) && l.message.is_some())
                    .map(|l| l.id)
                    .collect(),
            };
            let mut sent = Vec::new();
            // On a failure, stop; what was sent before it is still confirmed (or put back).
            let mut failed = None;
            for id in &ids {
                let replayed = match taken(place, id).await {
                    Ok(letter) => replay_one(&*transport, place, letter.clone())
                        .await
                        .map(|()| letter),
                    Err(e) => Err(e),
                };
                match replayed {
                    Ok(letter) => sent.push(letter),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // Confirmed once closing finds nothing unacknowledged: a broker has confirmed each
            // publish already; a native transport waits for the receivers' acknowledgements.
            let closed = tokio::time::timeout(wait, transport.close()).await;
            if !matches!(closed, Ok(Ok(()))) {
                for letter in &sent {
                    place.put(letter).await.with_context(|| {
                        format!(
                            "putting back dead letter {} (its replay is unconfirmed)",
                            letter.id
                        )
                    })?;
                }
                let why = match closed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("not confirmed within {} s", wait.as_secs()),
                };
                return Err(Exit(
                    1,
                    format!(
                        "{} replayed messages were not confirmed ({why}; is the receiving service running?): \
                         the letters were put back; a later replay may hand a message over twice",
                        sent.len()
                    ),
                )
                .into());
            }
            for letter in &sent {
                if json {
                    out::line("replayed", &serde_json::json!({ "id": letter.id }));
                } else {
                    println!("replayed {}", letter.id);
                }
            }
            out::note(json, &format!("{} dead letters replayed", sent.len()));
            return match failed {
                Some(e) => Err(e),
                None => Ok(ExitCode::SUCCESS),
            };
        }
        DlqAction::Purge { id, all: _ } => {
            let n = match id {
                Some(id) => taken(place, &id).await.map(|_| 1)?,
                None => place.purge().await.context("purging the dead letters")?,
            };
            if json {
                out::line("purged", &serde_json::json!({ "count": n }));
            } else {
                println!("purged {n} dead letters from {}", place.place());
            }
        }
    }
    let _ = tokio::time::timeout(crate::CLOSE_WAIT, transport.close()).await;
    Ok(ExitCode::SUCCESS)
}
