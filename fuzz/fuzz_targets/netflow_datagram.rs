//! Any bytes as NetFlow/IPFIX export datagrams from two exporters, in sequence (so templates
//! from earlier datagrams meet later data): no panic, every datagram counted, every record fits
//! the `flow` schema.
#![no_main]
use varde_collector::flow::netflow::NetflowReceiver;
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut r = NetflowReceiver::new();
    let (Ok(a), Ok(b)) = ("192.0.2.1:2055".parse(), "192.0.2.2:2055".parse()) else {
        return;
    };
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else {
        return;
    };
    let mut n = 0;
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        let from = if i % 2 == 0 { a } else { b };
        let flows = r.datagram(from, chunk);
        n += 1;
        let mut batch = BatchBuilder::new(SourceKind::Flow, tenant, id.clone(), flows.len());
        for f in &flows {
            assert!(batch.push(&f.event(0)).is_ok(), "a record must fit the flow schema: {f:?}");
        }
    }
    assert_eq!(r.stats().datagrams, n);
});
