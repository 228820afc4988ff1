//! Any bytes from a TCP syslog sender, cut at any point: the RFC 6587 framer never panics and
//! never invents bytes (what comes out is at most what went in).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let cut = usize::from(cut).min(stream.len());
    let mut framer = varde_collector::sources::Framer::new();
    let mut out = framer.push(&stream[..cut]);
    out.append(&framer.push(&stream[cut..]));
    if let Some(last) = framer.finish() {
        out.push(&last);
    }
    let total: usize = out.iter().map(<[u8]>::len).sum();
    assert!(total <= stream.len(), "the framer produced more bytes than it received");
    assert!(out.iter().all(|m| m.len() <= varde_collector::sources::MAX_LINE));
});
