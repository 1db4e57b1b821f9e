//! Replication ids: a stable, versioned hash of what is replicated, so the same replication
//! defined twice shares its checkpoints and any change to what is replicated starts afresh.
//!
//! The inputs are those of CouchDB's version-4 id (this server's uuid, both endpoints without
//! passwords, the canonical filter, `winning_revs_only`, `since_seq`) plus settee's `fields`
//! and `unmatched` when given (so ids of replications without them are unchanged); the bytes hashed are
//! settee's own (canonical JSON, not Erlang's term format), tagged with [`VERSION`].

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::unmatched::Unmatched;
use super::{Filter, Spec};

/// Bumped whenever the hashed inputs change, so old checkpoints are never misread.
pub const VERSION: &str = "settee-replication-id-1";

/// `base` names the checkpoint documents; `full` adds CouchDB's `+continuous` and
/// `+create_target` suffixes and names the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepId {
    pub base: String,
    pub full: String,
}

pub fn replication_id(spec: &Spec, server_uuid: &str) -> RepId {
    let filter = match &spec.filter {
        Filter::All => Value::Null,
        Filter::DocIds(ids) => json!({"doc_ids": ids}),
        Filter::Selector(s) => json!({"selector": s.normalized()}),
    };
    let mut inputs = vec![
        json!(VERSION),
        json!(server_uuid),
        spec.source.id_part(),
        spec.target.id_part(),
        filter,
    ];
    if spec.winning_revs_only {
        inputs.push(json!("winning_revs_only"));
    }
    if let Some(s) = &spec.since_seq {
        inputs.push(json!({"since_seq": s}));
    }
    // settee's own options change what crosses, so they define the replication too.
    if let Some(f) = &spec.fields {
        inputs.push(json!({"fields": f.canonical()}));
    }
    if spec.unmatched != Unmatched::Keep {
        inputs.push(json!({"unmatched": spec.unmatched.as_str()}));
    }
    let mut bytes = Vec::new();
    crate::store::write_canonical(&Value::Array(inputs), &mut bytes);
    let base = crate::ids::hex(&Md5::digest(&bytes));
    let mut full = base.clone();
    if spec.continuous {
        full.push_str("+continuous");
    }
    if spec.create_target {
        full.push_str("+create_target");
    }
    RepId { base, full }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: Value) -> RepId {
        replication_id(&Spec::parse(&v).unwrap(), "uuid1")
    }

    #[test]
    fn same_definition_same_id_and_filters_never_share() {
        let a =
            id(json!({"source": "http://u:p1@h/a", "target": "b", "selector": {"x": 1, "y": 2}}));
        let b = id(
            json!({"source": "http://u:p2@h:80/a/", "target": "b", "selector": {"x": {"$eq": 1}, "y": 2}, "worker_processes": 2}),
        );
        assert_eq!(
            a, b,
            "password, default port, trailing slash, implicit $eq and tuning knobs do not change the id"
        );
        let c = id(json!({"source": "http://u:p1@h/a", "target": "b", "selector": {"x": 2}}));
        assert_ne!(a.base, c.base);
        let d = id(
            json!({"source": "http://u:p1@h/a", "target": "b", "selector": {"x": 1, "y": 2}, "continuous": true, "create_target": true}),
        );
        assert_eq!(d.base, a.base);
        assert_eq!(d.full, format!("{}+continuous+create_target", a.base));
        let f = id(
            json!({"source": "http://u:p1@h/a", "target": "b", "selector": {"x": 1, "y": 2}, "fields": ["t"]}),
        );
        assert_ne!(f.base, a.base, "a field list is part of the definition");
        let g = id(
            json!({"source": "http://u:p1@h/a", "target": "b", "selector": {"x": 1, "y": 2}, "unmatched": "delete"}),
        );
        assert_ne!(g.base, a.base);
        assert_ne!(g.base, f.base);
        let e = id(json!({"source": "http://u:p1@h/a", "target": "b", "doc_ids": ["x"]}));
        assert_ne!(e.base, a.base);
        assert_ne!(
            replication_id(
                &Spec::parse(&json!({"source": "a", "target": "b"})).unwrap(),
                "other"
            )
            .base,
            id(json!({"source": "a", "target": "b"})).base
        );
    }
}
