//! `/{db}/_conflicts`: documents with conflicting live leaves, and resolving one.
//!
//! A resolution is what a CouchDB user would write by hand: the kept (or merged) version plus
//! a deletion of every other live leaf, in one `_bulk_docs`, so it replicates as such. It is
//! refused (409) when the document's live leaves are no longer the ones the user decided on.

use std::collections::BTreeSet;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::db_api::{blocking, prepare_writes};
use super::error::ApiError;
use super::request::{json_resp, Req, Resp};
use super::Ctx;
use crate::store::ReadOpts;

/// Top-level members whose values differ between two versions (attachments by digest).
fn differing(a: &Value, b: &Value) -> BTreeSet<String> {
    let empty = Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let digests = |v: Option<&Value>| -> Vec<(String, Value)> {
        v.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| (k.clone(), x.get("digest").cloned().unwrap_or(Value::Null)))
                    .collect()
            })
            .unwrap_or_default()
    };
    a.keys()
        .chain(b.keys())
        .filter(|k| !matches!(k.as_str(), "_id" | "_rev" | "_revisions" | "_conflicts"))
        .filter(|k| match k.as_str() {
            "_attachments" => digests(a.get(*k)) != digests(b.get(*k)),
            _ => a.get(*k) != b.get(*k),
        })
        .cloned()
        .collect()
}

/// `GET /{db}/_conflicts?limit=&after=`: each conflicted document with its winner, its losing
/// live leaves, and the top-level fields that differ; `next` continues the listing.
pub async fn list(ctx: &Arc<Ctx>, db: &str, req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let db = ctx.store.db(db)?;
    let limit = req.uint("limit")?.unwrap_or(100).clamp(1, 10_000) as usize;
    let after = req.param("after").map(str::to_owned);
    let found = blocking(move || Ok(db.conflicts(after.as_deref(), limit)?)).await?;
    let next = (found.len() >= limit)
        .then(|| found.last().map(|(id, _)| id.clone()))
        .flatten();
    let rows: Vec<Value> = found
        .into_iter()
        .map(|(id, leaves)| {
            let winner = &leaves[0];
            let fields: BTreeSet<String> = leaves[1..]
                .iter()
                .flat_map(|l| differing(winner, l))
                .collect();
            json!({
                "id": id,
                "winner": winner["_rev"],
                "losers": leaves[1..].iter().map(|l| l["_rev"].clone()).collect::<Vec<_>>(),
                "fields": fields,
            })
        })
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        &json!({"rows": rows, "next": next}),
    ))
}

/// `POST /{db}/_conflicts/{id}` with `{"leaves": [...], "keep": rev}` or
/// `{"leaves": [...], "merge": {...}}`.
pub async fn resolve(ctx: &Arc<Ctx>, db_name: &str, id: &str, req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let body = req.json_object()?;
    let decided: BTreeSet<String> = body
        .get("leaves")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|r| r.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| {
            ApiError::bad_request(
                "`leaves` must list the live revisions you decided on (from GET /{db}/_conflicts)",
            )
        })?;
    let db = ctx.store.db(db_name)?;
    let current = db.open_revs(id, None, false, &ReadOpts::default())?;
    // Winner first, as the store lists leaves.
    let live: Vec<String> = current
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .filter(|d| d.get("_deleted") != Some(&Value::Bool(true)))
        .filter_map(|d| d["_rev"].as_str().map(str::to_owned))
        .collect();
    if live.iter().cloned().collect::<BTreeSet<_>>() != decided {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the document changed: its live leaves are now {live:?}, not the {decided:?} you decided on; look again and resend"
            ),
        ));
    }
    let (kept, mut writes) =
        match (body.get("keep"), body.get("merge")) {
            (Some(Value::String(keep)), None) => {
                if !live.contains(keep) {
                    return Err(ApiError::bad_request(format!(
                        "`keep` {keep:?} is not one of the live leaves {live:?}"
                    )));
                }
                (keep.clone(), Vec::new())
            }
            (None, Some(Value::Object(merged))) => {
                let mut doc = merged.clone();
                doc.remove("_rev");
                doc.insert("_id".into(), json!(id));
                doc.insert("_rev".into(), json!(live[0]));
                (live[0].clone(), vec![Value::Object(doc)])
            }
            _ => return Err(ApiError::bad_request(
                "give either `keep` (the revision to keep) or `merge` (the merged document body)",
            )),
        };
    let deleted: Vec<String> = live.iter().filter(|r| **r != kept).cloned().collect();
    writes.extend(
        deleted
            .iter()
            .map(|r| json!({"_id": id, "_rev": r, "_deleted": true})),
    );
    prepare_writes(ctx, req, db_name, &mut writes, true)?;
    let out = blocking(move || Ok(db.bulk_docs(writes, true)?)).await?;
    let mut rev = kept;
    let mut errors = Vec::new();
    for (i, o) in out.into_iter().enumerate() {
        match o.result {
            Ok(r) if i == 0 && body.get("merge").is_some() => rev = r,
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the resolution was not written whole: {}",
                errors.join("; ")
            ),
        ));
    }
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"ok": true, "id": id, "rev": rev, "deleted": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_fields_compare_values_and_attachment_digests() {
        let a = json!({"_id": "d", "_rev": "1-a", "t": 1, "same": [1], "_attachments": {"f": {"digest": "md5-1", "stub": true}}});
        let b = json!({"_id": "d", "_rev": "1-b", "t": 2, "same": [1], "extra": true, "_attachments": {"f": {"digest": "md5-1", "data": "AA=="}}});
        assert_eq!(
            differing(&a, &b).into_iter().collect::<Vec<_>>(),
            vec!["extra", "t"]
        );
    }
}
