//! Property tests of the wire envelope: every batch the builder can make survives
//! encode → decode unchanged, row by row; damaged bytes are rejected without a panic.

use proptest::prelude::*;
use std::sync::LazyLock;
use varde_core::schema::{ColumnType, typed_columns};

use varde_core::envelope::{EnvelopeError, EnvelopeHeader};
use varde_core::{
    BatchBuilder, BatchReader, CollectorId, CollectorKey, Envelope, EnvelopeWriter, Event,
    Kommunenummer, Row, SourceKind, Value, ValueRef,
};

/// One key for the signature properties (making a key per case would test the OS's randomness).
static KEY: LazyLock<CollectorKey> =
    LazyLock::new(|| CollectorKey::generate().expect("randomness").0);
static OTHER_KEY: LazyLock<CollectorKey> =
    LazyLock::new(|| CollectorKey::generate().expect("randomness").0);

fn kind() -> impl Strategy<Value = SourceKind> {
    prop::sample::select(SourceKind::ALL.to_vec())
}

fn value(ty: ColumnType) -> BoxedStrategy<Value> {
    match ty {
        ColumnType::Utf8 => ".{0,40}".prop_map(Value::Str).boxed(),
        ColumnType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ColumnType::UInt8 => any::<u8>().prop_map(|v| Value::UInt(v.into())).boxed(),
        ColumnType::UInt16 => any::<u16>().prop_map(|v| Value::UInt(v.into())).boxed(),
        ColumnType::UInt32 => any::<u32>().prop_map(|v| Value::UInt(v.into())).boxed(),
        ColumnType::UInt64 => any::<u64>().prop_map(Value::UInt).boxed(),
        ColumnType::Timestamp => any::<i64>().prop_map(Value::Time).boxed(),
    }
}

fn event(kind: SourceKind) -> impl Strategy<Value = Event> {
    let typed: Vec<_> = typed_columns(kind)
        .iter()
        .map(|spec| prop::option::of(value(spec.ty)).prop_map(move |v| v.map(|v| (spec.name, v))))
        .collect();
    (
        any::<i64>(),
        any::<i64>(),
        prop::option::of("[a-z0-9.-]{1,20}"),
        prop::option::of(0u8..=7),
        prop::option::of("\\PC{0,80}"),
        typed,
        prop::collection::vec(("[A-Za-z_.]{1,12}", "\\PC{0,20}"), 0..5),
    )
        .prop_map(|(t, r, host, severity, message, typed, attrs)| Event {
            event_time_us: t,
            receive_time_us: r,
            host,
            severity,
            message,
            typed: typed.into_iter().flatten().collect(),
            attrs,
        })
}

fn batch_case() -> impl Strategy<Value = (SourceKind, Kommunenummer, u64, Vec<Event>)> {
    let tenants: Vec<Kommunenummer> = Kommunenummer::all().collect();
    (kind(), prop::sample::select(tenants), any::<u64>()).prop_flat_map(|(k, t, seq)| {
        prop::collection::vec(event(k), 0..20).prop_map(move |events| (k, t, seq, events))
    })
}

fn value_ref_matches(got: Option<ValueRef<'_>>, want: Option<&Value>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(ValueRef::Str(a)), Some(Value::Str(b))) => a == b,
        (Some(ValueRef::Bool(a)), Some(Value::Bool(b))) => a == *b,
        (Some(ValueRef::UInt(a)), Some(Value::UInt(b))) => a == *b,
        (Some(ValueRef::Time(a)), Some(Value::Time(b))) => a == *b,
        _ => false,
    }
}

/// `batch` holds `events`, row by row, as the reader reads them.
fn rows_are(
    kind: SourceKind,
    tenant: Kommunenummer,
    batch: &arrow_array::RecordBatch,
    events: &[Event],
) -> Result<(), TestCaseError> {
    let reader = BatchReader::new(kind, batch).expect("reader");
    prop_assert_eq!(reader.len(), events.len());
    for (row, e) in events.iter().enumerate() {
        prop_assert_eq!(reader.event_time_us(row), e.event_time_us);
        prop_assert_eq!(reader.receive_time_us(row), e.receive_time_us);
        prop_assert_eq!(reader.tenant(row), tenant.as_str());
        prop_assert_eq!(reader.host(row), e.host.as_deref());
        prop_assert_eq!(reader.severity(row), e.severity);
        prop_assert_eq!(reader.message(row), e.message.as_deref());
        for (i, spec) in typed_columns(kind).iter().enumerate() {
            prop_assert!(
                value_ref_matches(reader.typed(i, row), e.get(spec.name)),
                "row {} column {}",
                row,
                spec.name
            );
        }
        let attrs: Vec<(String, String)> = reader
            .attrs(row)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        prop_assert_eq!(&attrs, &e.attrs);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn envelopes_round_trip((kind, tenant, seq, events) in batch_case()) {
        let collector = CollectorId::new("k-prop-01").expect("valid id");
        let mut builder = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
        for e in &events {
            builder.push(e).expect("generated events fit their schema");
        }
        let batch = builder.finish().expect("batch");
        let envelope = Envelope::new(kind, tenant, collector, seq, batch).expect("envelope");
        let bytes = envelope.encode().expect("encode");
        let decoded = Envelope::decode(&bytes).expect("decode");
        prop_assert_eq!(&decoded, &envelope);

        rows_are(kind, tenant, &decoded.batch, &events)?;
    }

    /// A builder given each finished batch back (`BatchBuilder::recycle`, as the collector's
    /// shipper does once a batch is encoded) builds every following batch row for row from its
    /// own events, nothing of an earlier batch in it, whatever the sizes' order.
    #[test]
    fn a_builder_given_its_batches_back_builds_each_from_its_own_rows(
        (kind, batches) in kind().prop_flat_map(|k| {
            (Just(k), prop::collection::vec(prop::collection::vec(event(k), 0..30), 1..6))
        }),
    ) {
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        let collector = CollectorId::new("k-prop-05").expect("valid id");
        let mut builder = BatchBuilder::new(kind, tenant, collector, 4);
        for events in &batches {
            for e in events {
                builder.push(e).expect("fits");
            }
            let batch = builder.finish().expect("batch");
            rows_are(kind, tenant, &batch, events)?;
            builder.recycle(batch);
        }
    }

    /// One row reused for event after event (as the collector's edge reuses its rows) holds
    /// each event exactly, nothing of the one before, and appends as the event itself does.
    #[test]
    fn a_reused_row_assigned_each_event_is_that_event(
        (kind, events) in kind().prop_flat_map(|k| (Just(k), prop::collection::vec(event(k), 1..20))),
    ) {
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        let collector = CollectorId::new("k-prop-06").expect("valid id");
        let mut builder = BatchBuilder::new(kind, tenant, collector, events.len());
        let mut row = Row::default();
        for e in &events {
            row.assign(e);
            prop_assert_eq!(&row.to_event(), e);
            builder.push_row(&row).expect("generated events fit their schema");
        }
        let batch = builder.finish().expect("batch");
        rows_are(kind, tenant, &batch, &events)?;
    }

    /// A row's texts are its host, message, typed text values, then each attribute's key and
    /// value, in that order; rewriting replaces exactly the ones chosen, by that numbering.
    #[test]
    fn rewriting_a_rows_texts_replaces_exactly_the_chosen_ones(
        e in kind().prop_flat_map(event),
        picks in prop::collection::vec(any::<bool>(), 64),
    ) {
        let mut want = e.clone();
        let mut texts: Vec<String> = Vec::new();
        let mut n = 0;
        let mut fix = |s: &mut String| {
            texts.push(s.clone());
            if picks.get(n).copied().unwrap_or(false) {
                *s = format!("<{n}>");
            }
            n += 1;
        };
        if let Some(h) = want.host.as_mut() {
            fix(h);
        }
        if let Some(m) = want.message.as_mut() {
            fix(m);
        }
        for (_, v) in &mut want.typed {
            if let Value::Str(s) = v {
                fix(s);
            }
        }
        for (k, v) in &mut want.attrs {
            fix(k);
            fix(v);
        }
        let mut row = Row::default();
        row.assign(&e);
        prop_assert_eq!(row.texts().collect::<Vec<_>>(), texts);
        let new: Vec<String> = (0..64).map(|i| format!("<{i}>")).collect();
        let mut out = Row::default();
        out.assign(&want); // buffers with something in them already
        row.rewrite_texts(&mut out, |i| {
            picks.get(i).copied().unwrap_or(false).then(|| new[i].as_str())
        });
        prop_assert_eq!(out.to_event(), want);
    }

    #[test]
    fn damaged_envelopes_are_rejected_without_panic(
        (kind, tenant, seq, events) in batch_case(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let collector = CollectorId::new("k-prop-02").expect("valid id");
        let mut builder = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
        for e in &events {
            builder.push(e).expect("fits");
        }
        let envelope = Envelope::new(kind, tenant, collector, seq, builder.finish().expect("batch"))
            .expect("envelope");
        let bytes = envelope.encode().expect("encode");
        // Any truncation is an error.
        let n = cut.index(bytes.len());
        prop_assert!(Envelope::decode(&bytes[..n]).is_err());
        // Any single-byte change either fails cleanly or still yields a valid envelope.
        let mut damaged = bytes.clone();
        let i = flip.index(damaged.len());
        damaged[i] = byte;
        let _ = Envelope::decode(&damaged);
    }

    #[test]
    fn a_signed_envelope_verifies_only_unchanged_and_only_under_its_key(
        (kind, tenant, seq, events) in batch_case(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let collector = CollectorId::new("k-prop-03").expect("valid id");
        let mut builder = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
        for e in &events {
            builder.push(e).expect("fits");
        }
        let envelope = Envelope::new(kind, tenant, collector, seq, builder.finish().expect("batch"))
            .expect("envelope");
        let bytes = envelope.encode_signed(&KEY).expect("encode");
        let (header, _) = EnvelopeHeader::peek(&bytes).expect("header");
        prop_assert_eq!(header.signature.map(|s| s.key_id), Some(KEY.key_id()));
        prop_assert!(EnvelopeHeader::verify(&bytes, &KEY.public_key()).is_ok());
        prop_assert!(EnvelopeHeader::verify(&bytes, &OTHER_KEY.public_key()).is_err());
        // The signed form decodes to the same envelope.
        prop_assert_eq!(Envelope::decode(&bytes).expect("decodes"), envelope.clone());
        // Every changed bit anywhere (header, key id, signature, payload) breaks the signature
        // or the header, and every truncation too.
        let mut damaged = bytes.clone();
        let i = flip.index(damaged.len());
        damaged[i] ^= mask;
        prop_assert!(EnvelopeHeader::verify(&damaged, &KEY.public_key()).is_err(), "byte {} changed", i);
        let n = cut.index(bytes.len());
        prop_assert!(EnvelopeHeader::verify(&bytes[..n], &KEY.public_key()).is_err());
        // The unsigned form is not verifiable at all.
        prop_assert!(matches!(
            EnvelopeHeader::verify(&envelope.encode().expect("encode"), &KEY.public_key()),
            Err(EnvelopeError::Unsigned)
        ));
    }

    /// One writer over a run of batches, large and small in any order (its buffers kept from
    /// the one before): every envelope verifies and decodes to its own batch, with nothing of
    /// an earlier one in it.
    #[test]
    fn a_kept_writer_encodes_each_batch_as_if_alone(
        cases in prop::collection::vec(batch_case(), 1..5),
    ) {
        let collector = CollectorId::new("k-prop-04").expect("valid id");
        let mut writer = EnvelopeWriter::new();
        for (kind, tenant, seq, events) in cases {
            let mut builder = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
            for e in &events {
                builder.push(e).expect("fits");
            }
            let envelope =
                Envelope::new(kind, tenant, collector.clone(), seq, builder.finish().expect("batch"))
                    .expect("envelope");
            let bytes = writer.encode_signed(&envelope, &KEY).expect("encode");
            prop_assert!(EnvelopeHeader::verify(&bytes, &KEY.public_key()).is_ok());
            prop_assert_eq!(Envelope::decode(&bytes).expect("decodes"), envelope.clone());
            let unsigned = writer.encode(&envelope).expect("encode");
            prop_assert_eq!(Envelope::decode(&unsigned).expect("decodes"), envelope);
        }
    }
}

#[test]
fn wrong_tenant_column_is_rejected() {
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    let collector = CollectorId::new("k0301-a").expect("id");
    let mut builder = BatchBuilder::new(SourceKind::Syslog, oslo, collector.clone(), 1);
    builder.push(&Event::default()).expect("push");
    let batch = builder.finish().expect("batch");
    let err = Envelope::new(SourceKind::Syslog, bergen, collector, 1, batch).expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("tenant '0301' but header says 4601"),
        "{err}"
    );
}

#[test]
fn wrong_typed_values_are_refused_by_the_builder() {
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let collector = CollectorId::new("k0301-a").expect("id");
    let mut builder = BatchBuilder::new(SourceKind::WebAccess, oslo, collector, 1);
    let bad = Event {
        typed: vec![("status", Value::UInt(70_000))],
        ..Event::default()
    };
    assert!(builder.push(&bad).is_err());
    let unknown = Event {
        typed: vec![("facility", Value::UInt(1))],
        ..Event::default()
    };
    assert!(builder.push(&unknown).is_err());
    assert!(builder.is_empty(), "a refused event appends nothing");
}
