//! `commsctl run`: start a dispatch, stream its output and results, and never hang: an overall
//! deadline, a liveness check of the server while waiting, and Ctrl-C cancels the dispatch.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use comms_fleet::control::{DispatchRequest, Outcome};
use comms_server::client::{Client, Event};
use serde_json::json;
use tokio::time::{sleep_until, Instant};

use crate::out;

/// How often the server is checked while no event arrives.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one check may take before the server counts as gone.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// Failed checks in a row that mean "the server went away".
const PROBES_TO_GIVE_UP: u32 = 2;
/// How long to wait for cancelled results after Ctrl-C.
const AFTER_CANCEL: Duration = Duration::from_secs(5);

/// Why the wait ended early.
enum Stop {
    ServerGone(String),
    Deadline,
    Interrupted,
}

pub async fn run_dispatch(
    client: &mut Client,
    request: &DispatchRequest,
    deadline: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let accepted = client.dispatch(request).await?;
    let total = accepted.targets.len() + accepted.unreachable.len();
    if json {
        out::line("accepted", &accepted);
    } else if total == 0 {
        eprintln!("no agent matches");
    } else {
        eprintln!("dispatch {}: {} targets", accepted.dispatch, total);
    }
    if total == 0 {
        if json {
            out::line(
                "summary",
                &json!({"dispatch": accepted.dispatch, "targets": 0, "ok": 0, "failed": 0,
                        "unknown": [], "complete": true}),
            );
        }
        return Ok(ExitCode::from(1));
    }
    let mut unknown: BTreeSet<String> = accepted
        .targets
        .iter()
        .chain(&accepted.unreachable)
        .cloned()
        .collect();
    let (mut done, mut failed) = (0usize, 0usize);
    let mut end = Instant::now() + deadline;
    let mut next_probe = Instant::now() + PROBE_EVERY;
    let mut failed_probes = 0u32;
    let mut cancelled = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let stop: Option<Stop> = loop {
        tokio::select! {
            event = client.next_event() => {
                let Some(event) = event else {
                    break Some(Stop::ServerGone("the connection closed".into()));
                };
                next_probe = Instant::now() + PROBE_EVERY;
                failed_probes = 0;
                match event {
                    Event::Output(o) if o.dispatch == accepted.dispatch => {
                        if json {
                            out::line("output", &o);
                        } else {
                            for line in o.data.lines() {
                                println!("{} {}: {line}", o.agent, o.stream);
                            }
                        }
                    }
                    Event::Result(r) if r.dispatch == accepted.dispatch => {
                        if !unknown.remove(&r.agent) {
                            continue; // a duplicate
                        }
                        done += 1;
                        if r.outcome != Outcome::Ok {
                            failed += 1;
                        }
                        if json {
                            out::line("result", &r);
                        } else {
                            print_result(&r);
                            if total > 1 {
                                eprintln!("[{done}/{total} done, {failed} failed]");
                            }
                        }
                    }
                    Event::Done(d) if d.dispatch == accepted.dispatch => break None,
                    _ => {}
                }
            }
            _ = sleep_until(next_probe) => {
                match client.ping(PROBE_WAIT).await {
                    Ok(()) => failed_probes = 0,
                    Err(e) => {
                        failed_probes += 1;
                        if failed_probes >= PROBES_TO_GIVE_UP {
                            break Some(Stop::ServerGone(e.to_string()));
                        }
                    }
                }
                next_probe = Instant::now() + PROBE_EVERY;
            }
            _ = sleep_until(end) => break Some(if cancelled { Stop::Interrupted } else { Stop::Deadline }),
            _ = &mut ctrl_c, if !cancelled => {
                cancelled = true;
                out::note(json, &format!("interrupted: asking the server to cancel dispatch {}", accepted.dispatch));
                if let Err(e) = client.cancel(&accepted.dispatch).await {
                    out::error(json, &format!("could not ask the server to cancel: {e}"));
                }
                end = Instant::now() + AFTER_CANCEL;
            }
        }
    };
    let unknown: Vec<String> = unknown.into_iter().collect();
    let ok = done - failed;
    let reason = match &stop {
        None => None,
        Some(Stop::ServerGone(why)) => Some(format!("the server stopped answering ({why})")),
        Some(Stop::Deadline) => Some(format!("the deadline of {} s passed", deadline.as_secs())),
        Some(Stop::Interrupted) => Some("interrupted".to_owned()),
    };
    if json {
        out::line(
            "summary",
            &json!({"dispatch": accepted.dispatch, "targets": total, "ok": ok, "failed": failed,
                    "unknown": unknown, "complete": stop.is_none() && !cancelled,
                    "reason": reason}),
        );
    } else if let Some(reason) = &reason {
        eprintln!(
            "commsctl: dispatch {} incomplete: {reason}; {done} of {total} results known \
             ({ok} ok, {failed} failed); still unknown: {}. Fetch the results later with \
             `commsctl results {}`.",
            accepted.dispatch,
            if unknown.is_empty() {
                "none".to_owned()
            } else {
                unknown.join(", ")
            },
            accepted.dispatch
        );
    }
    Ok(match stop {
        _ if cancelled => ExitCode::from(130),
        Some(_) => ExitCode::from(3),
        None if failed == 0 && done == total => ExitCode::SUCCESS,
        None => ExitCode::from(1),
    })
}

fn print_result(r: &comms_fleet::control::TargetResult) {
    let detail = r.result.as_ref().map(|x| {
        format!(
            " exit={} {} ms{}",
            x.exit_code.map_or("-".into(), |c| c.to_string()),
            x.duration_ms,
            x.error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})"))
        )
    });
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("{} => {outcome}{}", r.agent, detail.unwrap_or_default());
}
