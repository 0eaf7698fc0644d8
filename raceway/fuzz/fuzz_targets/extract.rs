#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Lines of `name: value`, as a proxy would deliver them.
    let headers: Vec<(String, String)> = String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = raceway::propagation::extract(headers.as_slice());
});
