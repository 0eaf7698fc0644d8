#![no_main]
use libfuzzer_sys::fuzz_target;
use raceway::ClockPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = ClockPayload::decode(data) {
        assert!(payload.clock.len() <= raceway::clock_header::MAX_WIRE_COMPONENTS);
        assert_eq!(ClockPayload::decode(payload.encode().as_bytes()), Ok(payload));
    }
});
