#![no_main]
use libfuzzer_sys::fuzz_target;
use raceway::trace_context::TraceState;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if let Ok(ts) = TraceState::extract(lines.into_iter()) {
        assert!(ts.members().count() <= 32);
        let _ = ts.header_with_entry(Some("00f067aa0ba902b7"));
    }
});
