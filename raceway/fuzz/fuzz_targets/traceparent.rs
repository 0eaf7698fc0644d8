#![no_main]
use libfuzzer_sys::fuzz_target;
use raceway::trace_context::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Ok(tp) = TraceParent::parse(data) {
        // Whatever parses re-serialises to a value that parses to the same thing.
        assert_eq!(TraceParent::parse(&tp.to_header()), Ok(tp));
    }
});
