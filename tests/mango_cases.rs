//! Runs every case of `fixtures/mango/cases.json` and reports each failing case by name.

use serde_json::Value;
use settee::mango::json::Doc;
use settee::mango::Selector;

#[test]
fn mango_fixture_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mango/cases.json");
    let text = std::fs::read_to_string(path).expect("read cases.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("parse cases.json");
    assert!(
        cases.len() >= 250,
        "expected at least 250 cases, got {}",
        cases.len()
    );

    let mut failures = Vec::new();
    let (mut matched, mut errors) = (0, 0);
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("<unnamed>");
        let why = case["why"].as_str().unwrap_or("");
        let parsed = Selector::parse(&case["selector"]);
        match (case.get("error"), case.get("match")) {
            (Some(Value::String(tag)), None) => {
                errors += 1;
                match parsed {
                    Err(e) if e.error_tag() == tag => {}
                    Err(e) => failures.push(format!(
                        "{name}: expected error {tag}, got {} ({e}) [{why}]",
                        e.error_tag()
                    )),
                    Ok(s) => failures.push(format!(
                        "{name}: expected error {tag}, parsed as {} [{why}]",
                        s.normalized()
                    )),
                }
            }
            (None, Some(Value::Bool(want))) => {
                matched += 1;
                match parsed {
                    Ok(s) => {
                        let got = s.matches(&case["doc"]);
                        if got != *want {
                            failures.push(format!(
                                "{name}: expected match={want}, got {got}; normalized {} doc {} [{why}]",
                                s.normalized(),
                                case["doc"]
                            ));
                        }
                        // Only the members `top_fields` names decide the match, so the
                        // changes feed may decode just those.
                        if let (Some(fields), Some(obj)) = (s.top_fields(), case["doc"].as_object())
                        {
                            let kept: serde_json::Map<String, Value> = obj
                                .iter()
                                .filter(|(k, _)| fields.iter().any(|f| f == *k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            if s.matches(&Value::Object(kept)) != got {
                                failures.push(format!(
                                    "{name}: matches differently on its top fields {fields:?} alone"
                                ));
                            }
                            // ...decoded borrowed from the text, as the feed reads bodies.
                            let text = serde_json::to_vec(&case["doc"]).unwrap_or_default();
                            if Doc::object(&text, Some(fields)).map(|d| s.matches(&d)) != Some(got)
                            {
                                failures
                                    .push(format!("{name}: matches differently decoded borrowed"));
                            }
                        }
                        // The normal form must parse back to the same normal form and match
                        // the same way.
                        match Selector::parse(&s.normalized()) {
                            Ok(again) => {
                                if again.normalized() != s.normalized() {
                                    failures.push(format!(
                                        "{name}: normalization not idempotent: {} -> {}",
                                        s.normalized(),
                                        again.normalized()
                                    ));
                                } else if again.matches(&case["doc"]) != got {
                                    failures
                                        .push(format!("{name}: normal form matches differently"));
                                }
                            }
                            Err(e) => {
                                failures.push(format!("{name}: normal form does not parse: {e}"))
                            }
                        }
                    }
                    Err(e) => failures.push(format!(
                        "{name}: expected match={want}, got error {} ({e}) [{why}]",
                        e.error_tag()
                    )),
                }
            }
            _ => failures.push(format!("{name}: malformed case (needs `match` or `error`)")),
        }
    }
    eprintln!(
        "mango cases: {} total, {matched} match cases, {errors} error cases",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} mango cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
