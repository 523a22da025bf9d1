//! Fragment queries: time ranges, start selectors, ListFragments,
//! GetMediaForFragmentList.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::client::ServiceException;
use crate::local::store::ApiError;

use super::storage::{lead_tags, Lead, Media, Stored};

/// Epoch ms of a JSON timestamp (epoch seconds, fractional).
pub(crate) fn epoch_ms(v: Option<&Value>, what: &str) -> Result<u64, ApiError> {
    v.and_then(Value::as_f64)
        .filter(|s| *s >= 0.0)
        .map(|s| (s * 1000.0).round() as u64)
        .ok_or_else(|| {
            ApiError::new(
                ServiceException::InvalidArgument,
                format!("{what} is required"),
            )
        })
}

/// A `{FragmentSelectorType, TimestampRange}` selector: server timestamps?
/// and the range in ms.
pub(crate) fn time_range(
    sel: &Value,
    default_server: bool,
    need_end: bool,
) -> Result<(bool, u64, Option<u64>), ApiError> {
    let by_server = match sel.get("FragmentSelectorType").and_then(Value::as_str) {
        Some("PRODUCER_TIMESTAMP") => false,
        Some("SERVER_TIMESTAMP") => true,
        None => default_server,
        Some(other) => {
            return Err(ApiError::new(
                ServiceException::InvalidArgument,
                format!("unknown FragmentSelectorType {other}"),
            ))
        }
    };
    let r = sel.get("TimestampRange");
    let start = epoch_ms(
        r.and_then(|r| r.get("StartTimestamp")),
        "TimestampRange.StartTimestamp",
    )?;
    let end = match r.and_then(|r| r.get("EndTimestamp")) {
        None | Some(Value::Null) if !need_end => None,
        e => Some(epoch_ms(e, "TimestampRange.EndTimestamp")?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(ApiError::new(
            ServiceException::InvalidArgument,
            "StartTimestamp is after EndTimestamp",
        ));
    }
    Ok((by_server, start, end))
}

/// Whether a fragment's producer (or server) timestamp is in the range.
pub(crate) fn in_range(f: &Stored, by_server: bool, start: u64, end: Option<u64>) -> bool {
    let t = if by_server {
        f.server_ms
    } else {
        f.producer_ms
    };
    t >= start && end.is_none_or(|e| t <= e)
}

/// Where a GetMedia request starts, as an index into the stream's fragments.
pub(crate) fn start_index(media: &Media, selector: &Value) -> Result<usize, ApiError> {
    let bad = |m: &str| ApiError::new(ServiceException::InvalidArgument, m);
    let kind = selector
        .get("StartSelectorType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("StartSelector.StartSelectorType is required"))?;
    let frags = &media.fragments;
    let after = |number: &str| {
        frags
            .iter()
            .position(|f| f.number == number)
            .map(|i| i + 1)
            .ok_or_else(|| {
                ApiError::new(
                    ServiceException::InvalidArgument,
                    format!("fragment {number} not found"),
                )
            })
    };
    let ts = || epoch_ms(selector.get("StartTimestamp"), "StartTimestamp");
    match kind {
        "EARLIEST" => Ok(0),
        "NOW" => Ok(frags.len()),
        "FRAGMENT_NUMBER" => after(
            selector
                .get("AfterFragmentNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("AfterFragmentNumber is required"))?,
        ),
        "CONTINUATION_TOKEN" => after(
            selector
                .get("ContinuationToken")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("ContinuationToken is required"))?,
        ),
        // The fragment that contains the instant (GetMedia API reference:
        // "the fragment that contains the timestamp"), else the first after
        // it: the first whose span [start, start + length) — its media, to
        // the end of its last frame — ends after it; the newest included.
        "PRODUCER_TIMESTAMP" => {
            let t = ts()?;
            Ok(frags
                .iter()
                .position(|f| f.producer_ms.saturating_add(f.media_ms.max(1)) > t)
                .unwrap_or(frags.len()))
        }
        "SERVER_TIMESTAMP" => {
            let t = ts()?;
            Ok(frags
                .iter()
                .position(|f| f.server_ms.saturating_add(f.media_ms.max(1)) > t)
                .unwrap_or(frags.len()))
        }
        other => Err(bad(&format!("unknown StartSelectorType {other}"))),
    }
}

/// ListFragments: the stored fragments in a time range, paged.
pub(crate) fn list_fragments(media: Option<&Media>, req: &Value) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::new(ServiceException::InvalidArgument, m);
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => 1000,
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=1000).contains(m))
            .ok_or_else(|| bad("MaxResults must be 1 to 1000".into()))? as usize,
    };
    let start = match req.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| bad("invalid NextToken".into()))?,
    };
    let range = match req.get("FragmentSelector") {
        None | Some(Value::Null) => None,
        Some(sel) => {
            if sel.get("FragmentSelectorType").is_none() {
                return Err(bad(
                    "FragmentSelector.FragmentSelectorType is required".into()
                ));
            }
            Some(time_range(sel, false, true)?)
        }
    };
    let all: Vec<&Arc<Stored>> = media
        .map(|m| {
            m.fragments
                .iter()
                .filter(|f| range.is_none_or(|(srv, a, b)| in_range(f, srv, a, b)))
                .collect()
        })
        .unwrap_or_default();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|f| {
            serde_json::json!({
                "FragmentNumber": f.number,
                "FragmentSizeInBytes": f.size,
                "ProducerTimestamp": f.producer_ms as f64 / 1000.0,
                "ServerTimestamp": f.server_ms as f64 / 1000.0,
                "FragmentLengthInMilliseconds": f.media_ms,
            })
        })
        .collect();
    let mut out = serde_json::json!({"Fragments": page});
    if start + max < all.len() {
        out["NextToken"] = Value::from((start + max).to_string());
    }
    Ok(out)
}

/// GetMediaForFragmentList: the named fragments, in the order asked
/// (their documents are read one at a time as they are sent:
/// [`fragment_list_doc`]).
pub(crate) fn fragments_by_number(
    media: Option<&Media>,
    req: &Value,
) -> Result<Vec<Arc<Stored>>, ApiError> {
    let bad = |m: String| ApiError::new(ServiceException::InvalidArgument, m);
    let numbers = req
        .get("Fragments")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 1000)
        .ok_or_else(|| bad("Fragments must list 1 to 1000 fragment numbers".into()))?;
    numbers
        .iter()
        .map(|n| {
            let n = n
                .as_str()
                .ok_or_else(|| bad("fragment numbers are strings".into()))?;
            media
                .and_then(|m| m.fragments.iter().find(|f| f.number == n))
                .cloned()
                .ok_or_else(|| {
                    ApiError::new(
                        ServiceException::ResourceNotFound,
                        format!("fragment {n} not found"),
                    )
                })
        })
        .collect()
}

/// A fragment's document as GetMediaForFragmentList sends it: the stored
/// chunks (nothing copied) with the service Tags in this API's spelling
/// (`…_SERVER_SIDE_TIMESTAMP`, `…_PRODUCER_SIDE_TIMESTAMP`).
///
/// Errors: its file cannot be read (expired meanwhile).
pub(crate) fn fragment_list_doc(f: &Stored) -> std::io::Result<Vec<Bytes>> {
    let doc = f.doc()?;
    Ok(match doc.split_first() {
        Some((prefix, [_, rest @ ..])) => {
            let lead = lead_tags(Lead::FragmentList, &f.number, f.server_ms, f.producer_ms);
            [prefix.clone(), Bytes::from(lead)]
                .into_iter()
                .chain(rest.iter().cloned())
                .collect()
        }
        _ => doc,
    })
}
