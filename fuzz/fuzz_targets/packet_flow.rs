//! Any bytes as a captured frame of each link type, through the decoder and the flow table: no
//! panic, every decoded packet lands in exactly one flow, and every flow fits the `flow` schema.
#![no_main]
use varde_collector::flow::decode::{decode, linktype};
use varde_collector::flow::table::{FlowSettings, FlowTable};
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut table = FlowTable::new(FlowSettings { max_flows: 4, ..FlowSettings::default() });
    let mut out = Vec::new();
    let mut decoded = 0u64;
    // The same bytes as every link type, and cut at every eighth length.
    for lt in [linktype::ETHERNET, linktype::LINUX_SLL, linktype::RAW, 0] {
        for cut in (0..=data.len()).step_by(8) {
            if let Ok(p) = decode(lt, &data[..cut], cut as i64 * 1_000_000) {
                assert!(p.payload.len() <= cut);
                table.push(&p, &mut out);
                decoded += 1;
            }
        }
    }
    table.drain(&mut out);
    let packets: u64 = out.iter().map(|f| f.packets_out + f.packets_in).sum();
    assert_eq!(packets, decoded);
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else {
        return;
    };
    let mut b = BatchBuilder::new(SourceKind::Flow, tenant, id, out.len());
    for f in &out {
        assert!(b.push(&f.event(0)).is_ok(), "a flow must fit the flow schema: {f:?}");
    }
});
