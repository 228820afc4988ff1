//! Unit and property tests of the spool: round trips, reopening, torn and corrupt tails, the
//! bound and its two policies, checkpoints.

use super::*;
use proptest::prelude::*;

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64, when_full: FullPolicy) -> SpoolConfig {
    SpoolConfig {
        dir: Some(dir.to_owned()),
        max_bytes,
        segment_bytes: Some(segment_bytes),
        fsync: FsyncPolicy::Never,
        fsync_interval_ms: 1000,
        when_full,
    }
}

fn open(c: &SpoolConfig) -> Spool {
    Spool::open(c.clone(), Arc::new(SpoolStats::default())).expect("open spool")
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("record-{i}-").into_bytes();
    p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
    p
}

fn claim_all(s: &mut Spool) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let batch = s.claim(7).expect("claim");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_come_back_in_order_until_acknowledged_even_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 4096, FullPolicy::Block);
    let mut s = open(&c);
    for i in 0..20 {
        s.append(&payload(i, 300), i as u32, &[]).expect("append");
    }
    assert_eq!(s.depth(), (20, (0..20).sum()));
    let first = claim_all(&mut s);
    assert_eq!(first.len(), 20);
    assert!(
        first
            .iter()
            .enumerate()
            .all(|(i, r)| r.envelope == payload(i, 300))
    );
    // Acknowledge the first 8 only, then "crash" (drop without anything else).
    s.ack(&first[..8]).expect("ack");
    assert_eq!(s.depth().0, 12);
    drop(s);

    let mut s = open(&c);
    assert_eq!(s.depth().0, 12);
    let again = claim_all(&mut s);
    let got: Vec<Vec<u8>> = again.iter().map(|r| r.envelope.clone()).collect();
    let want: Vec<Vec<u8>> = (8..20).map(|i| payload(i, 300)).collect();
    assert_eq!(got, want);
    s.ack(&again).expect("ack");
    assert_eq!(s.depth(), (0, 0));
    // Fully acknowledged closed segments are gone; only the active one is left.
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn a_released_claim_is_handed_out_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 4096, FullPolicy::Block);
    let mut s = open(&c);
    for i in 0..5 {
        s.append(&payload(i, 10), 1, &[]).expect("append");
    }
    let a = s.claim(3).expect("claim");
    s.ack(&a[..1]).expect("ack");
    s.release();
    let b = claim_all(&mut s);
    assert_eq!(b.len(), 4);
    assert_eq!(b[0].envelope, payload(1, 10));
}

#[test]
fn a_torn_tail_is_truncated_and_counted_and_earlier_records_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 1 << 18, FullPolicy::Block);
    let mut s = open(&c);
    for i in 0..3 {
        s.append(&payload(i, 100), 1, &[]).expect("append");
    }
    drop(s);
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let len = std::fs::metadata(&seg).expect("stat").len();
    // Power loss in the middle of the third record.
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(len - 40).expect("cut");
    drop(f);

    let stats = Arc::new(SpoolStats::default());
    let mut s = Spool::open(c.clone(), stats.clone()).expect("reopen");
    assert_eq!(get(&stats.corrupt_tails), 1);
    let record_len = (HEADER_LEN + 100) as u64;
    assert_eq!(get(&stats.truncated_bytes), record_len - 40);
    let got = claim_all(&mut s);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].envelope, payload(1, 100));
    // The spool goes on working after the repair.
    s.append(&payload(9, 100), 1, &[])
        .expect("append after repair");
    assert_eq!(claim_all(&mut s).len(), 1);
}

#[test]
fn a_flipped_bit_and_a_zero_filled_tail_are_caught_by_the_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 1 << 18, FullPolicy::Block);
    let mut s = open(&c);
    for i in 0..4 {
        s.append(&payload(i, 64), 1, &[]).expect("append");
    }
    drop(s);
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let record_len = HEADER_LEN + 64;
    // Damage the body of the third record.
    bytes[2 * record_len + HEADER_LEN + 5] ^= 0x10;
    std::fs::write(&seg, &bytes).expect("write");
    let stats = Arc::new(SpoolStats::default());
    let mut s = Spool::open(c.clone(), stats.clone()).expect("reopen");
    assert_eq!(get(&stats.corrupt_tails), 1);
    assert_eq!(claim_all(&mut s).len(), 2);
    drop(s);

    // A file system that extended the file with zeros at power loss.
    let seg2 = segment_files(dir.path()).pop().expect("active segment");
    let mut f = OpenOptions::new().append(true).open(&seg2).expect("open");
    f.write_all(&[0u8; 100]).expect("zeros");
    drop(f);
    let stats = Arc::new(SpoolStats::default());
    let mut s = Spool::open(c, stats.clone()).expect("reopen");
    assert_eq!(get(&stats.corrupt_tails), 1);
    assert_eq!(get(&stats.truncated_bytes), 100);
    assert_eq!(claim_all(&mut s).len(), 2);
}

#[test]
fn block_refuses_when_full_and_accepts_after_acknowledgements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 64 * 1024, 8 * 1024, FullPolicy::Block);
    let mut s = open(&c);
    let mut stored = 0;
    loop {
        match s.append(&payload(stored, 1000), 1, &[]) {
            Ok(Appended::Stored) => stored += 1,
            Err(SpoolError::Full) => break,
            other => panic!("unexpected {other:?}"),
        }
        assert!(stored < 1000, "the bound is never reached");
    }
    assert!(s.total_bytes() <= c.max_bytes);
    let all = claim_all(&mut s);
    assert_eq!(all.len(), stored);
    s.ack(&all[..20]).expect("ack");
    assert!(matches!(
        s.append(&payload(0, 1000), 1, &[]),
        Ok(Appended::Stored)
    ));
    assert_eq!(get(&s.stats().dropped_records), 0);
}

#[test]
fn a_record_larger_than_half_the_bound_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 64 * 1024, 8 * 1024, FullPolicy::DropOldest);
    let mut s = open(&c);
    assert!(matches!(
        s.append(&vec![0u8; 40_000], 1, &[]),
        Err(SpoolError::TooLarge { .. })
    ));
}

#[test]
fn a_second_collector_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 4096, FullPolicy::Block);
    let _s = open(&c);
    assert!(matches!(
        Spool::open(c, Arc::new(SpoolStats::default())),
        Err(SpoolError::Locked(_))
    ));
}

#[test]
fn checkpoints_survive_in_records_and_in_the_checkpoint_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 4096, FullPolicy::Block);
    let mut s = open(&c);
    let cp = |offset| Checkpoint {
        key: "/var/log/a b.log".into(),
        file_id: 77,
        offset,
        start: offset,
    };
    for i in 0..30u64 {
        s.append(&payload(i as usize, 300), 1, &[cp(i * 10)])
            .expect("append");
    }
    // Acknowledge everything: segments are deleted, the checkpoint file keeps the position.
    let all = claim_all(&mut s);
    s.ack(&all).expect("ack");
    s.append(&payload(99, 10), 1, &[cp(1234)]).expect("append");
    drop(s);
    let s = open(&c);
    assert_eq!(s.checkpoints().get("/var/log/a b.log"), Some(&(77, 1234)));
}

#[test]
fn drop_oldest_counts_every_drop_and_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 64 * 1024, 8 * 1024, FullPolicy::DropOldest);
    let mut s = open(&c);
    let n = 500;
    for i in 0..n {
        s.append(&payload(i, 900), 3, &[]).expect("append");
        assert!(s.total_bytes() <= c.max_bytes, "bound exceeded");
    }
    let stats = s.stats().clone();
    let dropped = get(&stats.dropped_records) as usize;
    assert!(dropped > 0);
    let kept = claim_all(&mut s);
    assert_eq!(dropped + kept.len(), n);
    assert_eq!(get(&stats.dropped_events), 3 * dropped as u64);
    let want: Vec<Vec<u8>> = (dropped..n).map(|i| payload(i, 900)).collect();
    let got: Vec<Vec<u8>> = kept.iter().map(|r| r.envelope.clone()).collect();
    assert_eq!(got, want, "the newest records are kept, in order");
}

#[test]
fn drop_oldest_never_drops_records_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 64 * 1024, 8 * 1024, FullPolicy::DropOldest);
    let mut s = open(&c);
    for i in 0..5 {
        s.append(&payload(i, 900), 1, &[]).expect("append");
    }
    let in_flight = s.claim(2).expect("claim");
    for i in 5..500 {
        s.append(&payload(i, 900), 1, &[]).expect("append");
    }
    let dropped = get(&s.stats().dropped_records) as usize;
    // The records in flight are acknowledged after all the drops: they still count once.
    s.ack(&in_flight).expect("ack");
    let rest = claim_all(&mut s);
    assert_eq!(2 + dropped + rest.len(), 500);
    assert_eq!(
        rest.last().map(|r| r.envelope.clone()),
        Some(payload(499, 900))
    );
}

/// One step of a random spool life.
#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    AckClaimed(usize),
    Reopen,
    /// Reopen after cutting this many bytes off the newest segment's end.
    Tear(usize),
    /// Reopen after flipping a bit at this position (modulo its length) of the newest segment.
    Flip(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..700).prop_map(Op::Append),
        3 => (0usize..6).prop_map(Op::AckClaimed),
        1 => Just(Op::Reopen),
        1 => (1usize..200).prop_map(Op::Tear),
        1 => any::<usize>().prop_map(Op::Flip),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a model (the list of unacknowledged payloads): whatever happens, the spool hands
    /// out exactly the model's records in order; damage removes only records at or after the
    /// damage, every removal is counted, and nothing panics.
    #[test]
    fn the_spool_agrees_with_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), 1 << 20, 2048, FullPolicy::Block);
        let mut s = open(&c);
        // (payload, segment, offset) of unacknowledged records, in order.
        let mut model: Vec<(Vec<u8>, Pos)> = Vec::new();
        let mut next = 0usize;
        let mut claimed: Vec<Record> = Vec::new();
        for op in ops {
            match op {
                Op::Append(len) => {
                    let p = payload(next, len);
                    next += 1;
                    prop_assert_eq!(s.append(&p, 1, &[]).expect("append"), Appended::Stored);
                    // Where it went: the model learns positions from a later claim.
                    model.push((p, Pos::default()));
                }
                Op::AckClaimed(n) => {
                    if claimed.is_empty() {
                        s.release();
                        claimed = s.claim(6).expect("claim");
                    }
                    let n = n.min(claimed.len());
                    let acked: Vec<Record> = claimed.drain(..n).collect();
                    for r in &acked {
                        prop_assert_eq!(&model[0].0, &r.envelope);
                        model.remove(0);
                    }
                    s.ack(&acked).expect("ack");
                }
                Op::Reopen | Op::Tear(_) | Op::Flip(_) => {
                    drop(s);
                    claimed.clear();
                    let damaged = match op {
                        Op::Tear(cut) => segment_files(dir.path()).pop().and_then(|seg| {
                            let len = std::fs::metadata(&seg).ok()?.len();
                            let cut = (cut as u64).min(len);
                            let f = OpenOptions::new().write(true).open(&seg).ok()?;
                            f.set_len(len - cut).ok()?;
                            (cut > 0).then_some((seg, len - cut))
                        }),
                        Op::Flip(at) => segment_files(dir.path()).pop().and_then(|seg| {
                            let mut bytes = std::fs::read(&seg).ok()?;
                            if bytes.is_empty() {
                                return None;
                            }
                            let at = at % bytes.len();
                            bytes[at] ^= 0x01;
                            std::fs::write(&seg, &bytes).ok()?;
                            Some((seg, at as u64))
                        }),
                        _ => None,
                    };
                    let stats = Arc::new(SpoolStats::default());
                    s = Spool::open(c.clone(), stats.clone()).expect("reopen");
                    let all = claim_all(&mut s);
                    s.release();
                    // Records are a prefix of the model; damage explains any missing tail.
                    prop_assert!(all.len() <= model.len());
                    for (r, (p, _)) in all.iter().zip(&model) {
                        prop_assert_eq!(&r.envelope, p);
                    }
                    if all.len() < model.len() {
                        let (seg, at) = damaged.clone().expect("records lost without damage");
                        let seg_id: u64 = seg
                            .file_stem()
                            .and_then(|n| n.to_str())
                            .and_then(|n| n.parse().ok())
                            .expect("segment id");
                        // A cut exactly at a record boundary looks like records never
                        // written (and is harmless); whenever the spool cut a damaged tail,
                        // it counted it.
                        let len_now = std::fs::metadata(&seg).map_or(at, |m| m.len());
                        prop_assert!(get(&stats.corrupt_tails) >= 1 || len_now == at);
                        // Every record kept ends before the damage (or is in an older segment).
                        prop_assert!(all.iter().all(|r| r.pos.segment < seg_id || r.next.offset <= at));
                        model.truncate(all.len());
                    }
                }
            }
        }
    }

    /// Records of any content decode to what was encoded; a header and body of random bytes
    /// never pass as a record (or panic the reader).
    #[test]
    fn random_bytes_are_never_a_record(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.seg");
        std::fs::write(&path, &bytes).expect("write");
        let mut f = File::open(&path).expect("open");
        let outcome = read_record(&mut f, 0, bytes.len() as u64).expect("read");
        prop_assert!(!matches!(outcome, ReadOutcome::Record(..)));
    }
}
