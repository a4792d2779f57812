//! A job's progress as Server-Sent Events: `queued`, `started`, `progress`, then the terminal
//! state with the job, after which the stream ends. The stream polls the job's row (what keeps
//! working when API nodes and workers are separate processes).

use audiomill_core::{JobId, JobState};
use audiomill_store::Job;
use axum::response::sse::Event;
use futures::Stream;
use std::convert::Infallible;
use std::time::Instant;

use crate::auth::Tenant;
use crate::service::jobs;
use crate::views::JobView;
use crate::{AppError, AppState};

/// The event stream of one of the tenant's jobs (`404` for another's).
pub async fn stream(
    state: &AppState,
    tenant: Tenant,
    id: JobId,
) -> Result<impl Stream<Item = Result<Event, Infallible>>, AppError> {
    let job = jobs::get(state, tenant, id).await?;
    Ok(job_events(state.clone(), tenant, job))
}

/// What the stream last told the client.
struct Seen {
    state: Option<JobState>,
    attempt: u32,
    progress: f64,
}

/// Polls the job row and turns each change into an event; ends after the terminal event, when
/// the job disappears, or after the configured maximum duration. (A client that disconnects
/// drops the stream, which ends the polling with it.)
fn job_events(
    state: AppState,
    tenant: Tenant,
    first: Job,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let started = Instant::now();
    let id = first.id;
    let seen = Seen {
        state: None,
        attempt: 0,
        progress: -1.0,
    };
    futures::stream::unfold(
        (Some(first), seen, false),
        move |(mut pending, mut seen, done)| {
            let state = state.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let job = match pending.take() {
                        Some(job) => job,
                        None => {
                            if started.elapsed() > state.config().event_max_duration {
                                return None;
                            }
                            tokio::time::sleep(state.config().event_poll).await;
                            match jobs::get(&state, tenant, id).await {
                                Ok(job) => job,
                                Err(_) => return None,
                            }
                        }
                    };
                    if let Some((event, last)) = next_event(&job, &mut seen) {
                        // The same row may call for more than one event (a missed `started`
                        // before the terminal one, or progress after `started`): look again.
                        let again = (!last).then_some(job);
                        return Some((Ok(event), (again, seen, last)));
                    }
                }
            }
        },
    )
}

/// The event a job's current row calls for, if anything changed since `seen`, and whether it
/// is the last one of the stream.
fn next_event(job: &Job, seen: &mut Seen) -> Option<(Event, bool)> {
    let json = |v: serde_json::Value| Event::default().data(v.to_string());
    // Polling can miss a short attempt entirely (queued → running → succeeded between two
    // looks). A client that saw the job waiting is still told that an attempt started, so that
    // every stream reads queued, started, …, terminal.
    if seen.state.is_some() && job.attempt > seen.attempt && job.state != JobState::Running {
        seen.state = Some(JobState::Running);
        seen.attempt = job.attempt;
        seen.progress = -1.0;
        let event =
            json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("started");
        return Some((event, false));
    }
    let changed_state = seen.state != Some(job.state) || seen.attempt != job.attempt;
    if changed_state {
        seen.state = Some(job.state);
        seen.attempt = job.attempt;
        seen.progress = -1.0;
        let event = match job.state {
            JobState::Queued => {
                json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("queued")
            }
            JobState::Running => {
                json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("started")
            }
            terminal => {
                let view = serde_json::to_value(JobView::from(job.clone())).unwrap_or_default();
                json(view).event(terminal.as_str())
            }
        };
        return Some((event, job.state.is_terminal()));
    }
    if job.state == JobState::Running && job.progress > seen.progress {
        seen.progress = job.progress;
        let event =
            json(serde_json::json!({"id": job.id, "fraction": job.progress})).event("progress");
        return Some((event, false));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::{AccountId, InputRef, OperationKind, OutputSpec, UploadId};
    use chrono::Utc;

    fn job(state: JobState, attempt: u32) -> audiomill_store::Job {
        audiomill_store::Job {
            id: JobId::new(),
            account_id: AccountId::new(),
            operation: OperationKind::Analyze,
            options: serde_json::json!({}),
            input: InputRef::Upload(UploadId::new()),
            output: OutputSpec::default(),
            input_seconds: Some(1.0),
            state,
            progress: 0.0,
            attempt,
            max_attempts: 3,
            cancel_requested: false,
            error: None,
            result: None,
            created_at: Utc::now(),
            run_at: Utc::now(),
            started_at: (attempt > 0).then(Utc::now),
            finished_at: state.is_terminal().then(Utc::now),
            parent_id: None,
            reserved_seconds: 0.0,
            artifacts: vec![],
        }
    }

    /// Runs the stream's logic over the rows a poller would see, returning the event names.
    fn names(rows: &[(JobState, u32, f64)]) -> Vec<String> {
        let mut seen = Seen {
            state: None,
            attempt: 0,
            progress: -1.0,
        };
        let mut out = vec![];
        for &(state, attempt, progress) in rows {
            let mut row = job(state, attempt);
            row.progress = progress;
            while let Some((event, last)) = next_event(&row, &mut seen) {
                // `Event` does not expose its name; its wire form starts with it.
                let wire = format!("{event:?}");
                let name = [
                    "queued",
                    "started",
                    "progress",
                    "succeeded",
                    "failed",
                    "canceled",
                ]
                .into_iter()
                .find(|n| wire.contains(&format!("event: {n}\\n")))
                .unwrap_or("?");
                out.push(name.to_owned());
                if last {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn a_missed_attempt_still_reads_started() {
        use JobState::*;
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Succeeded, 1, 1.0)]),
            ["queued", "started", "succeeded"]
        );
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Running, 1, 0.5), (Succeeded, 1, 1.0)]),
            ["queued", "started", "progress", "succeeded"]
        );
        // A retry whose first attempt ran unseen.
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Queued, 1, 0.0), (Failed, 2, 0.0)]),
            ["queued", "started", "queued", "started", "failed"]
        );
        // Canceled before it ran: nothing started.
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Canceled, 0, 0.0)]),
            ["queued", "canceled"]
        );
        // A finished job's stream is its terminal event alone.
        assert_eq!(names(&[(Succeeded, 1, 1.0)]), ["succeeded"]);
    }
}
