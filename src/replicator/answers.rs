//! What a peer's answers mean, decided without I/O: a `_changes` page, `_bulk_get` results and
//! `open_revs` answers as the replicator reads them. Any JSON is accepted and read as far as it
//! makes sense (the fuzz targets feed these arbitrary input); only a `_changes` answer without
//! a `results` list is refused, as not CouchDB.

use serde_json::Value;

use super::peer::{ChangeRow, ChangesPage};

/// A `_changes` answer read as a page. `since` is the sequence asked from: the page's
/// `last_seq` when the peer names none and sent no rows. Rows without an id are skipped.
pub fn changes_page(v: &Value, since: &Value) -> Result<ChangesPage, &'static str> {
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .ok_or("_changes has no results list")?;
    let mut rows = Vec::with_capacity(results.len());
    for row in results {
        let Some(id) = row
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let revs: Vec<String> = row
            .get("changes")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|x| x.get("rev")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        rows.push(ChangeRow {
            seq: row.get("seq").cloned().unwrap_or(Value::Null),
            id: id.to_owned(),
            revs,
            deleted: row.get("deleted") == Some(&Value::Bool(true)),
            doc: row.get("doc").cloned(),
        });
    }
    let last_seq = v
        .get("last_seq")
        .cloned()
        .or_else(|| rows.last().map(|r| r.seq.clone()))
        .unwrap_or_else(|| since.clone());
    Ok(ChangesPage {
        rows,
        last_seq,
        pending: v.get("pending").and_then(Value::as_u64),
    })
}

/// The documents of a `_bulk_get` answer and how many revisions it did not find; `None` when
/// it has no `results` list (the caller falls back to `open_revs`).
pub fn bulk_get_docs(v: &Value) -> Option<(Vec<Value>, u64)> {
    let results = v.get("results").and_then(Value::as_array)?;
    let mut docs = Vec::new();
    let mut not_found = 0;
    for res in results {
        let (found, missed) = ok_docs(res.get("docs").unwrap_or(&Value::Null));
        docs.extend(found);
        not_found += missed;
    }
    Some((docs, not_found))
}

/// The documents of an `open_revs` answer (`[{"ok": doc} | {"missing": rev}]`) and how many
/// revisions it did not find.
pub fn open_revs_docs(v: &Value) -> (Vec<Value>, u64) {
    ok_docs(v)
}

fn ok_docs(v: &Value) -> (Vec<Value>, u64) {
    let mut docs = Vec::new();
    let mut not_found = 0;
    for d in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        match d.get("ok") {
            Some(doc) => docs.push(doc.clone()),
            None => not_found += 1,
        }
    }
    (docs, not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_and_documents() {
        let p = changes_page(
            &json!({"results": [{"seq": "1-x", "id": "a", "changes": [{"rev": "1-a"}], "deleted": true},
                {"seq": "2-x", "changes": []}], "pending": 3}),
            &json!(0),
        )
        .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert!(p.rows[0].deleted);
        assert_eq!(p.last_seq, json!("1-x"));
        assert_eq!(p.pending, Some(3));
        assert!(changes_page(&json!({"rows": []}), &json!(0)).is_err());
        assert_eq!(
            changes_page(&json!({"results": []}), &json!("7"))
                .unwrap()
                .last_seq,
            json!("7")
        );
        let (docs, missed) = bulk_get_docs(
            &json!({"results": [{"docs": [{"ok": {"_id": "a"}}, {"error": {}}]}, {"docs": 3}]}),
        )
        .unwrap();
        assert_eq!((docs.len(), missed), (1, 1));
        assert!(bulk_get_docs(&json!([])).is_none());
        assert_eq!(
            open_revs_docs(&json!([{"ok": {}}, {"missing": "1-a"}])).1,
            1
        );
        assert_eq!(open_revs_docs(&json!("junk")), (vec![], 0));
    }
}
