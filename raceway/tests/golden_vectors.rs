//! Runs every golden vector of spec/vectors/ against the Rust implementation.

use std::path::PathBuf;

use raceway::propagation::extract;
use raceway::trace_context::{TraceParent, TraceState};
use raceway::{CausalOrder, ClockPayload, VectorClock};
use serde_json::{json, Value};

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/vectors")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn lines(case: &Value, field: &str) -> Vec<Vec<u8>> {
    case[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().as_bytes().to_vec())
        .collect()
}

fn canonical(payload: &ClockPayload) -> Value {
    serde_json::from_slice(&payload.to_json()).unwrap()
}

fn clock_of(v: &Value) -> VectorClock {
    VectorClock::from_pairs(
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap())),
    )
}

fn clock_json(c: &VectorClock) -> Value {
    serde_json::to_value(c).unwrap()
}

#[test]
fn traceparent_vectors() {
    let doc = load("traceparent.json");
    let cases = doc["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let ls = lines(case, "lines");
        let result = TraceParent::extract(ls.iter().map(Vec::as_slice));
        if case["valid"].as_bool().unwrap() {
            let tp = result
                .unwrap_or_else(|| panic!("{name}: absent"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(tp.trace_id.to_string(), case["trace_id"], "{name}");
            assert_eq!(tp.parent_id.to_string(), case["parent_id"], "{name}");
            assert_eq!(format!("{:02x}", tp.flags.bits()), case["flags"], "{name}");
        } else {
            let got = match result {
                None => "absent",
                Some(Ok(_)) => panic!("{name}: accepted an invalid traceparent"),
                Some(Err(e)) => e.as_str(),
            };
            assert_eq!(got, case["error"], "{name}");
        }
    }
    assert!(cases.len() >= 50);
}

#[test]
fn tracestate_vectors() {
    let doc = load("tracestate.json");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ls = lines(case, "lines");
        let result = TraceState::extract(ls.iter().map(Vec::as_slice));
        if case["valid"].as_bool().unwrap() {
            let ts = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                serde_json::to_value(ts.members().collect::<Vec<_>>()).unwrap(),
                case["members"],
                "{name}"
            );
        } else {
            assert_eq!(
                result.map(|_| ()).unwrap_err().as_str(),
                case["error"],
                "{name}"
            );
        }
    }
    for case in doc["mutations"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let members: Vec<(String, String)> =
            serde_json::from_value(case["members"].clone()).unwrap();
        let ts = TraceState::from_members(members);
        let header = ts.header_with_entry(case["entry"].as_str());
        assert_eq!(json!(header), case["expected_header"], "{name}");
    }
}

#[test]
fn raceway_clock_vectors() {
    let doc = load("raceway_clock.json");
    for case in doc["decode"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let result = ClockPayload::decode(case["header"].as_str().unwrap().as_bytes());
        if case["valid"].as_bool().unwrap() {
            let payload = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(canonical(&payload), case["payload"], "{name}");
        } else {
            let err = result.expect_err(name);
            assert_eq!(serde_json::to_value(err).unwrap(), case["error"], "{name}");
        }
    }
    for case in doc["roundtrip"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let plain = format!(
            "v1;{}",
            base64_url(serde_json::to_string(&case["payload"]).unwrap().as_bytes())
        );
        let payload =
            ClockPayload::decode(plain.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = ClockPayload::decode(payload.encode().as_bytes()).unwrap();
        assert_eq!(canonical(&decoded), case["payload"], "{name}");
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn propagation_vectors() {
    let doc = load("propagation.json");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let headers: Vec<(String, String)> =
            serde_json::from_value(case["headers"].clone()).unwrap();
        let got = extract(headers.as_slice());
        let want = &case["expected"];
        match want["trace"].as_str().unwrap() {
            "continued" => {
                let tp = got
                    .traceparent
                    .unwrap_or_else(|| panic!("{name}: not continued"));
                assert_eq!(tp.trace_id.to_string(), want["trace_id"], "{name}");
                assert_eq!(tp.parent_id.to_string(), want["parent_id"], "{name}");
                assert_eq!(format!("{:02x}", tp.flags.bits()), want["flags"], "{name}");
            }
            _ => assert!(got.traceparent.is_none(), "{name}: continued"),
        }
        assert_eq!(
            json!(got.traceparent_error.map(|e| e.as_str())),
            want["traceparent_error"],
            "{name}"
        );
        assert_eq!(
            serde_json::to_value(got.tracestate.members().collect::<Vec<_>>()).unwrap(),
            want["tracestate"],
            "{name}"
        );
        assert_eq!(
            json!(got.tracestate_error.map(|e| e.as_str())),
            want["tracestate_error"],
            "{name}"
        );
        assert_eq!(
            serde_json::to_value(got.clock_status).unwrap(),
            want["clock_status"],
            "{name}"
        );
        assert_eq!(
            got.clock.as_ref().map(canonical).unwrap_or(Value::Null),
            want["clock"],
            "{name}"
        );
    }
}

#[test]
fn vector_clock_vectors() {
    let doc = load("vector_clock.json");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let a = clock_of(&case["a"]);
        match case["op"].as_str().unwrap() {
            "compare" => {
                let got = a.compare(&clock_of(&case["b"]));
                let want = match case["expected"].as_str().unwrap() {
                    "before" => CausalOrder::Before,
                    "after" => CausalOrder::After,
                    "equal" => CausalOrder::Equal,
                    _ => CausalOrder::Concurrent,
                };
                assert_eq!(got, want, "{name}");
            }
            "merge" => {
                let mut m = a.clone();
                m.merge(&clock_of(&case["b"]));
                assert_eq!(clock_json(&m), case["expected"], "{name}");
            }
            "tick" => {
                let mut t = a.clone();
                t.tick(case["key"].as_str().unwrap());
                assert_eq!(clock_json(&t), case["expected"], "{name}");
            }
            op => panic!("unknown op {op}"),
        }
    }
}

#[test]
fn status_names_match_their_serialised_form() {
    use raceway::ClockStatus::*;
    for status in [
        Ok,
        Reparented,
        Conflict,
        Absent,
        Ignored,
        TooLong,
        UnsupportedVersion,
        Malformed,
        TooLarge,
        TooManyComponents,
    ] {
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
}
