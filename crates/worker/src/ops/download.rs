//! `download`: a URL input's audio, kept as it came or converted; a playlist link becomes
//! one `download` job per item.

use crate::attempt::Shared;
use crate::conclude::fail;
use crate::errors::internal;
use crate::metrics::Outcome;
use crate::names::{download_name, name_from_title};
use crate::ops::{engine_error, write_failed};
use crate::protocol::{ChildArtifact, ChildMessage, ChildTask};
use audiomill_core::{
    DownloadOptions, ErrorCode, InputRef, InputUrl, JobError, JobId, Limits, Operation, OutputSpec,
    PlanLimits,
};
use audiomill_net::PlaylistMeta;
use audiomill_store::{ClaimedJob, NewJob, Reservation};
use chrono::Utc;

/// In the parent: how many items a playlist link may expand into, when the job asks for a
/// playlist (`None`: the link is one item).
pub(crate) fn playlist_items(operation: &Operation, limits: &Limits) -> Option<u32> {
    match operation {
        Operation::Download(o) if o.playlist => Some(
            o.max_items
                .unwrap_or(limits.max_playlist_items)
                .min(limits.max_playlist_items),
        ),
        _ => None,
    }
}

/// In the child: stores the fetched file as it came (once it probes as audio the engine
/// reads), or converts it with the title and uploader as tags.
pub(crate) fn run(
    task: &ChildTask,
    options: &DownloadOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    let source = task.source.clone().unwrap_or_default();
    let described = serde_json::to_value(&source).map_err(|e| write_failed("result", &e))?;
    match &options.convert {
        Some(convert) => {
            let ext = convert.format.extension();
            let file = format!("output.{ext}");
            let tags = audiomill_media::tags::Tags {
                title: source.title.clone(),
                artist: source.uploader.clone(),
                ..Default::default()
            };
            let info = audiomill_media::convert_tagged(
                &task.input,
                &task.output_dir.join(&file),
                convert,
                &task.limits,
                &tags,
                progress,
            )
            .map_err(engine_error)?;
            Ok(ChildMessage::Succeeded {
                artifacts: vec![ChildArtifact {
                    file,
                    name: download_name(&task.output_name, ext),
                    content_type: convert.format.content_type().into(),
                }],
                result: Some(serde_json::json!({
                    "source": described,
                    "media": info.media,
                    "normalization": info.normalization,
                })),
                audio_seconds: info.media.duration_secs.unwrap_or(0.0),
            })
        }
        None => {
            // Kept as it came, once it probes as audio the engine reads.
            let info = audiomill_media::probe(&task.input, &task.limits).map_err(engine_error)?;
            let (ext, content_type) =
                audiomill_core::media::stored_type(&info.container, &info.codec).ok_or_else(
                    || {
                        JobError::new(
                            ErrorCode::UnsupportedFormat,
                            format!(
                                "{} audio cannot be kept as it is; give a format to convert it",
                                info.container
                            ),
                        )
                    },
                )?;
            let file = format!("output.{ext}");
            std::fs::rename(&task.input, task.output_dir.join(&file))
                .map_err(|e| write_failed("moving the download", &e))?;
            progress(1.0);
            Ok(ChildMessage::Succeeded {
                artifacts: vec![ChildArtifact {
                    file,
                    name: download_name(&task.output_name, ext),
                    content_type: content_type.into(),
                }],
                result: Some(serde_json::json!({ "source": described, "media": info })),
                audio_seconds: info.duration_secs.unwrap_or(0.0),
            })
        }
    }
}

/// Makes the job the parent of one `download` job per playlist entry that the outbound policy
/// accepts, all in one store transaction.
pub(crate) async fn expand(
    shared: &Shared,
    claimed: &ClaimedJob,
    options: &DownloadOptions,
    plan: &PlanLimits,
    list: PlaylistMeta,
) -> Outcome {
    let job = &claimed.job;
    let item = Operation::Download(DownloadOptions {
        playlist: false,
        max_items: None,
        convert: options.convert.clone(),
    });
    let now = Utc::now();
    let period = audiomill_core::usage_period(now);
    let mut children = Vec::with_capacity(list.entries.len());
    let mut items = Vec::with_capacity(list.entries.len());
    let mut skipped = 0usize;
    for (i, entry) in list.entries.iter().enumerate() {
        let accepted = InputUrl::parse(&entry.url).ok().filter(|url| {
            audiomill_net::OutboundUrl::parse(url.as_str(), &shared.config.url_policy).is_ok()
        });
        let Some(url) = accepted else {
            tracing::warn!(target: "security", event = "blocked_url", item = i, "playlist item refused by the URL policy");
            skipped += 1;
            continue;
        };
        let name = entry
            .title
            .as_deref()
            .and_then(name_from_title)
            .unwrap_or_else(|| format!("item {}", i + 1));
        let id = JobId::new();
        items.push(serde_json::json!({
            "job": id,
            "title": entry.title,
            "duration_secs": entry.duration,
        }));
        children.push(NewJob {
            id,
            account_id: job.account_id,
            operation: item.clone(),
            input: InputRef::Url(url),
            output: OutputSpec { name: Some(name) },
            input_seconds: entry.duration,
            max_attempts: job.max_attempts,
            created_at: now,
            parent_id: Some(job.id),
            // Each item holds its own share of the quota (its stated length, else the longest
            // input the plan allows); the parent holds the one active-job slot.
            reservation: Some(Reservation {
                period: period.clone(),
                seconds: entry
                    .duration
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .unwrap_or(plan.max_input_seconds as f64),
                quota_seconds: plan.audio_seconds_per_month,
                concurrent_jobs: None,
            }),
        });
    }
    if children.is_empty() {
        return fail(
            shared,
            claimed,
            JobError::new(
                ErrorCode::MediaUnavailable,
                "the playlist has no items to download",
            ),
        )
        .await;
    }
    let result = serde_json::json!({
        "playlist": {
            "id": list.id,
            "title": list.title,
            "uploader": list.uploader,
            "truncated": list.truncated,
            "skipped": skipped,
        },
        "items": items,
    });
    match shared
        .store
        .expand_job(&claimed.lease, &children, result)
        .await
    {
        Ok(true) => {
            tracing::info!(
                items = children.len(),
                truncated = list.truncated,
                "playlist expanded"
            );
            Outcome::Succeeded
        }
        Ok(false) => Outcome::Lost,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the playlist's items");
            fail(shared, claimed, internal()).await
        }
    }
}
