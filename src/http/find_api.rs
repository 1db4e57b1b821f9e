//! `_find`, `_explain` and `_index`. A query scans the `_all_docs` range its selector's `_id`
//! conditions leave open and matches with the Mango engine; `mango::plan` picks the index
//! CouchDB would use among the stored JSON index definitions, which decides the rows'
//! membership and order and what `_explain` reports. No index data is kept, so any `sort`
//! works, with or without an index.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use hyper::{Method, StatusCode};
use md5::Digest;
use serde_json::{json, Map, Value};

use super::db_api::blocking;
use super::error::ApiError;
use super::request::{json_resp, Req, Resp};
use super::Ctx;
use crate::feed::leaf_matches;
use crate::mango::find::{parse_sort, project, FindRequest, SortDir, UseIndex};
use crate::mango::path::parse_field;
use crate::mango::plan::{cmp_index_rows, plan, warnings, Chosen, JsonIndex, Plan, Request};
use crate::store::{Database, ReadOpts};

fn parse_find(req: &Req) -> Result<FindRequest, ApiError> {
    let body = Value::Object(req.json_object()?);
    match body.get("selector") {
        Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_selector_json",
                format!("Selector must be a JSON object, not: {other}"),
            ))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_required_key",
                "Missing required key: selector",
            ))
        }
    }
    FindRequest::parse(&body).map_err(ApiError::from)
}

/// The bookmark is the offset reached so far, opaque to clients.
fn bookmark_offset(b: &Option<String>) -> Result<usize, ApiError> {
    let Some(b) = b else { return Ok(0) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.strip_prefix("settee:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_bookmark",
                format!("Invalid bookmark value: {b}"),
            )
        })
}

fn make_bookmark(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("settee:{offset}"))
}

/// Runs a query: every live, non-design document matching the selector, in the order (and
/// with the membership) of the index CouchDB would use, paged.
fn run(db: &Database, q: &FindRequest) -> Result<Found, ApiError> {
    let opts = ReadOpts {
        conflicts: q.conflicts,
        ..Default::default()
    };
    let Planned { indexes, plan, .. } = planned(db, q)?;
    let mut matched = Vec::new();
    let mut examined = 0;
    if !plan.empty {
        // Only the part of `_all_docs` the selector's `_id` conditions leave open.
        let scan = q.selector.id_scan();
        for r in db.docs_from(&scan.low, false) {
            let (id, rec) = r?;
            if scan.past(&id) {
                break;
            }
            if id.starts_with("_design/") || rec.is_deleted() {
                continue;
            }
            let Some(w) = rec.winner() else { continue };
            examined += 1;
            if leaf_matches(&q.selector, db, &id, &rec, w, &opts)? {
                matched.push(db.doc_json(&id, &rec, w, &opts)?);
            }
        }
    }
    match plan.index {
        Chosen::Json(i) => {
            // The index holds only documents having every indexed field, in key order.
            let ix = &indexes[i];
            let mut keyed: Vec<(Vec<Value>, Value)> = matched
                .into_iter()
                .filter_map(|d| Some((ix.key(&d)?, d)))
                .collect();
            fn id(d: &Value) -> &str {
                d["_id"].as_str().unwrap_or("")
            }
            keyed.sort_by(|(ka, a), (kb, b)| cmp_index_rows((ka, id(a)), (kb, id(b))));
            matched = keyed.into_iter().map(|(_, d)| d).collect();
        }
        // Rows in `_id` order: `_all_docs` serves no sort but one on `_id`.
        Chosen::AllDocs => {}
    }
    if plan.descending {
        matched.reverse();
    }
    let start = q.skip + bookmark_offset(&q.bookmark)?;
    let docs: Vec<Value> = matched
        .into_iter()
        .skip(start)
        .take(q.limit)
        .map(|d| match &q.fields {
            Some(f) => project(&d, f),
            None => d,
        })
        .collect();
    let bookmark = make_bookmark(start + docs.len());
    let warnings = warnings(&plan, q.use_index.as_ref(), &indexes);
    Ok(Found {
        docs,
        examined,
        bookmark,
        warnings,
    })
}

/// A query's answer.
struct Found {
    docs: Vec<Value>,
    examined: usize,
    bookmark: String,
    warnings: Vec<String>,
}

/// The database's usable JSON index definitions, their `GET _index` entries (same order),
/// and the plan for a query.
struct Planned {
    indexes: Vec<JsonIndex>,
    entries: Vec<Value>,
    plan: Plan,
}

fn planned(db: &Database, q: &FindRequest) -> Result<Planned, ApiError> {
    let (entries, indexes): (Vec<Value>, Vec<JsonIndex>) = list_indexes(db)?
        .into_iter()
        .filter_map(|(entry, ix)| Some((entry, ix?)))
        .unzip();
    let req = Request {
        sort: &q.sort,
        use_index: q.use_index.as_ref(),
        allow_fallback: q.allow_fallback,
    };
    let plan = plan(&q.selector, &req, &indexes).map_err(ApiError::from)?;
    Ok(Planned {
        indexes,
        entries,
        plan,
    })
}

pub async fn find(ctx: &Arc<Ctx>, db: &str, req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let db = ctx.store.db(db)?;
    let q = parse_find(req)?;
    let t = Instant::now();
    let stats = q.execution_stats;
    let f = blocking(move || run(&db, &q)).await?;
    let examined = f.examined;
    let mut out = json!({"docs": f.docs, "bookmark": f.bookmark});
    if !f.warnings.is_empty() {
        out["warning"] = json!(f.warnings.join("\n"));
    }
    if stats {
        out["execution_stats"] = json!({
            "total_keys_examined": 0,
            "total_docs_examined": examined,
            "total_quorum_docs_examined": 0,
            "results_returned": out["docs"].as_array().map_or(0, Vec::len),
            "execution_time_ms": t.elapsed().as_secs_f64() * 1000.0,
        });
    }
    Ok(json_resp(StatusCode::OK, &out))
}

fn all_docs_index() -> Value {
    json!({"ddoc": null, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}})
}

pub async fn explain(ctx: &Arc<Ctx>, db: &str, req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let database = ctx.store.db(db)?;
    let q = parse_find(req)?;
    let Planned { entries, plan, .. } = planned(&database, &q)?;
    let index = match plan.index {
        Chosen::AllDocs => all_docs_index(),
        Chosen::Json(i) => entries[i].clone(),
    };
    let use_index = match &q.use_index {
        None => json!([]),
        Some(UseIndex::Ddoc(d)) => json!([d]),
        Some(UseIndex::DdocAndName(d, n)) => json!([d, n]),
    };
    let sort: Map<String, Value> = q
        .sort
        .iter()
        .map(|(f, d)| {
            (
                f.clone(),
                json!(if *d == SortDir::Asc { "asc" } else { "desc" }),
            )
        })
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        &json!({
            "dbname": db,
            "index": index,
            "partitioned": false,
            "selector": q.selector.normalized(),
            "opts": {"use_index": use_index, "bookmark": q.bookmark.clone().unwrap_or_else(|| "nil".into()),
                     "limit": q.limit, "skip": q.skip, "sort": sort, "fields": q.fields.clone().unwrap_or_default(),
                     "partition": q.partition.clone().unwrap_or_default(), "r": q.r, "conflicts": q.conflicts,
                     "stable": q.stable, "stale": q.stale == crate::mango::find::Stale::Ok, "update": q.update,
                     "allow_fallback": q.allow_fallback, "execution_stats": q.execution_stats},
            "limit": q.limit,
            "skip": q.skip,
            "fields": q.fields.unwrap_or_default(),
            "mrargs": {"include_docs": true, "view_type": "map", "reduce": false, "start_key": plan.start_key,
                       "end_key": plan.end_key, "direction": if plan.descending { "rev" } else { "fwd" }, "stable": false, "update": true, "conflicts": "undefined"},
            "covering": false
        }),
    ))
}

/// Index definitions found in the database's query design docs, as `GET _index` lists them,
/// each with its parsed form (`None` for `_all_docs`).
fn list_indexes(db: &Database) -> Result<Vec<(Value, Option<JsonIndex>)>, ApiError> {
    let mut out = vec![(all_docs_index(), None)];
    for r in db.docs_from("_design/", false) {
        let (id, rec) = r?;
        if !id.starts_with("_design/") {
            break;
        }
        if rec.is_deleted() {
            continue;
        }
        let ddoc = db.get(&id, None, &ReadOpts::default())?;
        if ddoc.get("language").and_then(Value::as_str) != Some("query") {
            continue;
        }
        if let Some(Value::Object(views)) = ddoc.get("views") {
            for (name, view) in views {
                let def = view
                    .pointer("/options/def")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let parsed = json_index(&id, name, &def);
                out.push((
                    json!({"ddoc": id, "name": name, "type": "json", "partitioned": false, "def": def}),
                    parsed,
                ));
            }
        }
    }
    Ok(out)
}

/// A stored definition as the planner reads it; `None` if CouchDB could not use it either
/// (fields that are not a valid sort, a partial filter that is not a valid selector).
fn json_index(ddoc: &str, name: &str, def: &Value) -> Option<JsonIndex> {
    let fields = parse_sort(def.get("fields")?)
        .ok()?
        .into_iter()
        .map(|(f, _)| Some((f.clone(), parse_field(&f)?)))
        .collect::<Option<Vec<_>>>()?;
    // `mango_idx:get_partial_filter_selector/1`: the older name was `selector`.
    let partial = ["partial_filter_selector", "selector"]
        .iter()
        .find_map(|k| {
            def.get(*k)
                .filter(|p| p.as_object().is_some_and(|m| !m.is_empty()))
        });
    let partial = match partial {
        Some(p) => Some(crate::mango::Selector::parse(p).ok()?),
        None => None,
    };
    Some(JsonIndex {
        ddoc: ddoc.to_owned(),
        name: name.to_owned(),
        fields,
        partial,
    })
}

pub async fn index(
    ctx: &Arc<Ctx>,
    db_name: &str,
    rest: &[&str],
    req: &Req,
) -> Result<Resp, ApiError> {
    let db = ctx.store.db(db_name)?;
    match (rest, &req.method) {
        ([], &Method::GET) => {
            let idx: Vec<Value> = list_indexes(&db)?.into_iter().map(|(v, _)| v).collect();
            Ok(json_resp(
                StatusCode::OK,
                &json!({"total_rows": idx.len(), "indexes": idx}),
            ))
        }
        ([], &Method::POST) => {
            let body = req.json_object()?;
            let index = body
                .get("index")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "missing_required_key",
                        "Missing required key: index",
                    )
                })?;
            let fields = index
                .get("fields")
                .and_then(Value::as_array)
                .filter(|f| !f.is_empty())
                .ok_or_else(|| ApiError::bad_request("index.fields must be a non-empty array of field names or {field: direction}"))?;
            // CouchDB validates index fields as a sort: names or {name: direction}, one
            // direction for all.
            let def_fields: Vec<Value> = parse_sort(&Value::Array(fields.clone()))
                .map_err(ApiError::from)?
                .into_iter()
                .map(|(f, d)| json!({f: if d == SortDir::Asc { "asc" } else { "desc" }}))
                .collect();
            let mut def = Map::new();
            def.insert("fields".into(), Value::Array(def_fields.clone()));
            let mut partial = None;
            if let Some(p) = index.get("partial_filter_selector") {
                let sel = crate::mango::Selector::parse(p).map_err(ApiError::from)?;
                def.insert("partial_filter_selector".into(), p.clone());
                partial = Some(sel.normalized());
            }
            let def = Value::Object(def);
            let given_name = body.get("name").and_then(Value::as_str);
            // As CouchDB, the generated name and design document come from the whole
            // definition, the name included: two indexes on the same fields under different
            // names live in different design documents.
            let hash = crate::ids::hex(&md5::Md5::digest(
                json!({"def": def, "name": given_name, "type": "json"})
                    .to_string()
                    .as_bytes(),
            ));
            let name = given_name.map_or_else(|| hash.clone(), str::to_owned);
            let ddoc = body
                .get("ddoc")
                .and_then(Value::as_str)
                .map_or_else(|| hash.clone(), str::to_owned);
            let ddoc_id = if ddoc.starts_with("_design/") {
                ddoc
            } else {
                format!("_design/{ddoc}")
            };
            let existing = db.get(&ddoc_id, None, &ReadOpts::default()).ok();
            if let Some(e) = &existing {
                // An index goes only into a design document of Mango's own language, never
                // into a user's JavaScript one.
                if e.get("language").and_then(Value::as_str) != Some("query") {
                    let lang = e.get("language").map_or("false".to_owned(), |l| match l {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    });
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_ddoc_lang",
                        format!("Existing design doc has an invalid language: {lang}"),
                    ));
                }
            }
            if existing
                .as_ref()
                .and_then(|d| d.pointer(&format!("/views/{name}/options/def")))
                == Some(&def)
            {
                return Ok(json_resp(
                    StatusCode::OK,
                    &json!({"result": "exists", "id": ddoc_id, "name": name}),
                ));
            }
            let mut doc = existing
                .unwrap_or_else(|| json!({"_id": ddoc_id, "language": "query", "views": {}}));
            let map_fields: Map<String, Value> = def_fields
                .iter()
                .filter_map(|f| {
                    f.as_object()
                        .and_then(|m| m.iter().next())
                        .map(|(k, v)| (k.clone(), v.clone()))
                })
                .collect();
            let mut map = json!({"fields": map_fields});
            if let Some(p) = partial {
                map["partial_filter_selector"] = p;
            }
            doc["views"][&name] = json!({"map": map, "reduce": "_count", "options": {"def": def}});
            let out = blocking(move || Ok(db.bulk_docs(vec![doc], true)?)).await?;
            if let Some(Err(e)) = out.into_iter().next().map(|o| o.result) {
                return Err(e.into());
            }
            Ok(json_resp(
                StatusCode::OK,
                &json!({"result": "created", "id": ddoc_id, "name": name}),
            ))
        }
        ([ddoc, _type, name], &Method::DELETE)
        | (["_design", ddoc, _type, name], &Method::DELETE) => {
            let ddoc_id = format!("_design/{}", ddoc.trim_start_matches("_design/"));
            let mut doc = db
                .get(&ddoc_id, None, &ReadOpts::default())
                .map_err(|_| ApiError::not_found("Index not found"))?;
            let removed = doc
                .get_mut("views")
                .and_then(Value::as_object_mut)
                .and_then(|v| v.shift_remove(*name));
            if removed.is_none() {
                return Err(ApiError::not_found("Index not found"));
            }
            if doc["views"].as_object().is_some_and(Map::is_empty) {
                doc["_deleted"] = json!(true);
            }
            let out = blocking(move || Ok(db.bulk_docs(vec![doc], true)?)).await?;
            if let Some(Err(e)) = out.into_iter().next().map(|o| o.result) {
                return Err(e.into());
            }
            Ok(json_resp(StatusCode::OK, &json!({"ok": true})))
        }
        ([], _) => Err(ApiError::method_not_allowed("GET,POST")),
        _ => Err(ApiError::not_found("no such index endpoint")),
    }
}
