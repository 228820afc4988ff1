//! What a message says: digests of alerts, incident changes, silent collectors and tests,
//! rendered for one contact in its language, within TLP 2.0.
//!
//! **TLP is enforced here, once, for every channel** ([`may_carry`]): TLP:RED content is never
//! sent; TLP:AMBER and TLP:AMBER+STRICT content goes only to a named recipient of the
//! municipality it concerns; anything else gets a [`Message`] that says only that something
//! needs attention and where to log in. Every message carries its label in the subject and in
//! the first line of the body.
//!
//! **A municipality is told about its own data only.** Digests are built from its own alerts;
//! an alert that is part of a campaign says "several municipalities", never which (the
//! pipeline's campaign rows carry no other municipality). A shared component's owner is told
//! counts and how many municipalities, never their names.
//!
//! Nothing from an alert, rule or incident reaches a header: subjects are built from fixed
//! words, the municipality's or component's registered name and counts.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::json;
use varde_core::Kommunenummer;
use varde_store::Alert;
use varde_store::incident::{Incident, IncidentStatus, Tlp};

use crate::config::{Contact, Language, Level, Scope, Settings};

/// A rendered message, before it becomes an outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `digest`, `immediate`, `incident`, `collector_silent`, `test`.
    pub kind: &'static str,
    /// Its label.
    pub tlp: Tlp,
    /// Subject (label first).
    pub subject: String,
    /// Plain text (label first).
    pub text: String,
    /// HTML.
    pub html: String,
    /// Where in the dashboard to look.
    pub url: String,
    /// Counts per rule and component (empty when content is withheld).
    pub counts: Vec<Count>,
    /// The span it covers, µs (digests).
    pub span: Option<(i64, i64)>,
}

/// Alerts of one rule and component in a digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Count {
    /// The rule's level.
    pub level: String,
    /// The rule's title.
    pub rule: String,
    /// The rule's id.
    pub rule_id: String,
    /// The shared component, when known.
    pub component: String,
    /// How many alerts.
    pub alerts: u64,
    /// How many municipalities (a component owner's digest; 1 for a municipality's own).
    pub municipalities: u64,
    /// Part of a campaign across municipalities.
    pub campaign: bool,
    /// The newest alert of the rule (its page in the dashboard).
    pub newest: String,
}

/// The TLP 2.0 label as written in messages.
pub fn label(tlp: Tlp) -> String {
    format!("TLP:{}", tlp.as_str())
}

/// Whether content labelled `tlp` about `tenant`'s data (`None`: no one municipality's) may go
/// to `contact`.
pub fn may_carry(tlp: Tlp, contact: &Contact, tenant: Option<Kommunenummer>) -> bool {
    match tlp {
        Tlp::Clear | Tlp::Green => true,
        Tlp::Amber | Tlp::AmberStrict => {
            contact.named
                && match (&contact.scope, tenant) {
                    (Scope::Municipality(own), Some(t)) => *own == t,
                    // A component owner's named recipient: its own component's data.
                    (Scope::Component(_), None) => true,
                    _ => false,
                }
        }
        Tlp::Red => false,
    }
}

fn tr(lang: Language, nb: &'static str, en: &'static str) -> &'static str {
    match lang {
        Language::Nb => nb,
        Language::En => en,
    }
}

/// Who a contact is about, for subjects: "Oslo" or the component's name.
pub fn whose(contact: &Contact) -> String {
    match &contact.scope {
        Scope::Municipality(k) => format!("{} {}", k.as_str(), k.name()),
        Scope::Component(c) => varde_core::component::ComponentRegistry::builtin()
            .get(c)
            .map_or_else(|| c.clone(), |x| x.name.clone()),
    }
}

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn is_campaign(a: &Alert) -> bool {
    a.matched_field("correlation.scope") == Some("several municipalities")
}

/// Whether `contact` wants alert `a` at all (level or campaign), before TLP.
pub fn wants(contact: &Contact, a: &Alert) -> bool {
    let owned = match &contact.scope {
        Scope::Municipality(k) => a.tenant == k.as_str(),
        Scope::Component(c) => a.component == *c,
    };
    owned
        && ((contact.campaigns && is_campaign(a))
            || contact
                .alerts
                .is_some_and(|min| Level::parse(&a.rule_level).unwrap_or(Level::Medium) >= min))
}

/// The counts of a digest: per rule and component, most severe first, then most alerts.
pub fn counts(alerts: &[&Alert], base: &str) -> Vec<Count> {
    let mut by: BTreeMap<(&str, &str), (Count, std::collections::BTreeSet<&str>, i64)> =
        BTreeMap::new();
    for a in alerts {
        let e = by
            .entry((a.rule_id.as_str(), a.component.as_str()))
            .or_insert_with(|| {
                (
                    Count {
                        level: a.rule_level.clone(),
                        rule: a.rule_title.clone(),
                        rule_id: a.rule_id.clone(),
                        component: a.component.clone(),
                        alerts: 0,
                        municipalities: 0,
                        campaign: false,
                        newest: String::new(),
                    },
                    Default::default(),
                    i64::MIN,
                )
            });
        e.0.alerts += 1;
        e.0.campaign |= is_campaign(a);
        e.1.insert(a.tenant.as_str());
        if a.event_time_us >= e.2 {
            e.2 = a.event_time_us;
            e.0.newest = format!("{base}alerts/{}", a.alert_id);
        }
    }
    let mut out: Vec<Count> = by
        .into_values()
        .map(|(mut c, tenants, _)| {
            c.municipalities = tenants.len() as u64;
            c
        })
        .collect();
    out.sort_by(|a, b| {
        let la = Level::parse(&a.level).unwrap_or(Level::Medium);
        let lb = Level::parse(&b.level).unwrap_or(Level::Medium);
        lb.cmp(&la)
            .then(b.alerts.cmp(&a.alerts))
            .then(a.rule.cmp(&b.rule))
    });
    out
}

/// Most rules listed in one digest (the rest are summed in one line).
pub const DIGEST_ROWS: usize = 25;

/// Longest text of a rule title or incident title in a message (longer is cut, with "…").
pub const TITLE_MAX: usize = 300;

fn cut(s: &str) -> String {
    if s.chars().count() <= TITLE_MAX {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(TITLE_MAX).collect();
    out.push('…');
    out
}

fn queue_url(settings: &Settings, contact: &Contact) -> String {
    let base = settings.dashboard_url.as_str();
    match &contact.scope {
        Scope::Municipality(k) => format!("{base}alerts?tenant={}", k.as_str()),
        Scope::Component(c) => format!("{base}components/{c}"),
    }
}

/// The message that withholds content: something needs attention, log in.
pub fn notice(contact: &Contact, kind: &'static str, tlp: Tlp, url: String) -> Message {
    let lang = contact.language;
    let l = label(tlp);
    let what = match kind {
        "incident" => tr(
            lang,
            "En hendelse trenger oppmerksomheten deres",
            "An incident needs your attention",
        ),
        _ => tr(
            lang,
            "Nye varsler trenger oppmerksomheten deres",
            "New alerts need your attention",
        ),
    };
    let why = tr(
        lang,
        "Innholdet er merket slik at det ikke kan sendes hit. Logg inn i Varde for å lese det:",
        "Its content is labelled so that it cannot be sent here. Log in to Varde to read it:",
    );
    let subject = format!("[{l}] Varde: {what} ({})", whose(contact));
    let text = format!("{l}\n\n{what} ({}).\n\n{why}\n{url}\n", whose(contact));
    let html = page(
        &l,
        html! {
            p { strong { (what) } " (" (whose(contact)) ")." }
            p { (why) " " a href=(url) { (url) } }
        },
    );
    Message {
        kind,
        tlp,
        subject,
        text,
        html,
        url,
        counts: Vec::new(),
        span: None,
    }
}

fn page(label: &str, body: Markup) -> String {
    html! {
        (maud::DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "Varde" } }
            body {
                p { strong { (label) } }
                (body)
                p { small { "Varde" } }
            }
        }
    }
    .into_string()
}

/// A digest of `alerts` (the contact's own, already chosen by [`wants`]) detected in
/// `[from_us, to_us)`; `immediate` for the short digests of the most severe alerts.
pub fn digest(
    settings: &Settings,
    contact: &Contact,
    alerts: &[&Alert],
    (from_us, to_us): (i64, i64),
    immediate: bool,
) -> Message {
    let kind = if immediate { "immediate" } else { "digest" };
    let tlp = settings.alert_tlp;
    let url = queue_url(settings, contact);
    if !may_carry(tlp, contact, contact.tenant()) {
        let mut m = notice(contact, kind, tlp, url);
        m.span = Some((from_us, to_us));
        return m;
    }
    let lang = contact.language;
    let l = label(tlp);
    let counts = counts(alerts, settings.dashboard_url.as_str());
    let total: u64 = counts.iter().map(|c| c.alerts).sum();
    let owner = matches!(contact.scope, Scope::Component(_));
    let campaign = counts.iter().any(|c| c.campaign);
    let head = if immediate {
        tr(lang, "Alvorlige varsler", "Severe alerts")
    } else {
        tr(lang, "Varsler", "Alerts")
    };
    let subject = format!("[{l}] Varde: {head}, {} ({total})", whose(contact));
    let span = format!("{} – {}", time(from_us), time(to_us));
    let first = first_steps(lang, &counts, campaign);
    let mut text = format!(
        "{l}\n\n{head} {} {}, {span}: {total}\n\n",
        tr(lang, "for", "for"),
        whose(contact)
    );
    text.push_str(tr(
        lang,
        "Hva dere bør gjøre først:\n",
        "What to do first:\n",
    ));
    for (i, s) in first.iter().enumerate() {
        text.push_str(&format!("{}. {s}\n", i + 1));
    }
    text.push('\n');
    for c in counts.iter().take(DIGEST_ROWS) {
        text.push_str(&format!(
            "- {} × {} [{}]{}{}{}\n  {}\n",
            c.alerts,
            cut(&c.rule),
            c.level,
            if c.component.is_empty() {
                String::new()
            } else {
                format!(", {}", c.component)
            },
            if owner {
                format!(
                    ", {} {}",
                    c.municipalities,
                    tr(lang, "kommune(r)", "municipality(ies)")
                )
            } else {
                String::new()
            },
            if c.campaign {
                tr(
                    lang,
                    " – del av en kampanje mot flere kommuner",
                    " – part of a campaign against several municipalities",
                )
            } else {
                ""
            },
            c.newest
        ));
    }
    if counts.len() > DIGEST_ROWS {
        let rest: u64 = counts[DIGEST_ROWS..].iter().map(|c| c.alerts).sum();
        text.push_str(&format!(
            "- {rest} {}\n",
            tr(lang, "varsler fra andre regler", "alerts of other rules")
        ));
    }
    text.push_str(&format!(
        "\n{} {url}\n",
        tr(lang, "Alle varslene:", "All the alerts:")
    ));
    let html = page(
        &l,
        html! {
            p { strong { (head) } " " (tr(lang, "for", "for")) " " (whose(contact)) ", " (span) ": " (total) }
            h2 { (tr(lang, "Hva dere bør gjøre først", "What to do first")) }
            ol { @for s in &first { li { (s) } } }
            table {
                thead { tr {
                    th { (tr(lang, "Varsler", "Alerts")) }
                    th { (tr(lang, "Regel", "Rule")) }
                    th { (tr(lang, "Nivå", "Level")) }
                    th { (tr(lang, "Komponent", "Component")) }
                    @if owner { th { (tr(lang, "Kommuner", "Municipalities")) } }
                } }
                tbody {
                    @for c in counts.iter().take(DIGEST_ROWS) {
                        tr {
                            td { (c.alerts) }
                            td {
                                a href=(c.newest) { (cut(&c.rule)) }
                                @if c.campaign {
                                    " – " (tr(lang, "del av en kampanje mot flere kommuner", "part of a campaign against several municipalities"))
                                }
                            }
                            td { (c.level) }
                            td { (c.component) }
                            @if owner { td { (c.municipalities) } }
                        }
                    }
                }
            }
            p { a href=(url) { (tr(lang, "Alle varslene i Varde", "All the alerts in Varde")) } }
        },
    );
    Message {
        kind,
        tlp,
        subject,
        text,
        html,
        url,
        counts,
        span: Some((from_us, to_us)),
    }
}

fn first_steps(lang: Language, counts: &[Count], campaign: bool) -> Vec<String> {
    let mut steps = Vec::new();
    if let Some(top) = counts.first() {
        steps.push(format!(
            "{} «{}» ({}): {}",
            tr(
                lang,
                "Åpne det nyeste varselet av",
                "Open the newest alert of"
            ),
            cut(&top.rule),
            top.level,
            top.newest
        ));
    }
    steps.push(
        tr(
            lang,
            "Sjekk om vertene, brukerne og adressene i varselet er kjente og forventet.",
            "Check whether the hosts, users and addresses in the alert are known and expected.",
        )
        .to_owned(),
    );
    if campaign {
        steps.push(
            tr(
                lang,
                "Flere kommuner er rammet av det samme: behandle det som målrettet, og svar CERT-et om hva dere finner.",
                "Several municipalities are hit by the same: treat it as targeted, and tell the CERT what you find.",
            )
            .to_owned(),
        );
    }
    steps.push(
        tr(
            lang,
            "Ser dere noe dere ikke kan forklare: isoler verten og ring CERT-et.",
            "If you see anything you cannot explain: isolate the host and call the CERT.",
        )
        .to_owned(),
    );
    steps
}

/// What happened to an incident in a notification's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentNews {
    /// Opened.
    Opened,
    /// Changed (status, severity, TLP, links).
    Updated,
    /// Closed.
    Closed,
}

/// A message about an incident that concerns the contact's municipality (as the store gives
/// it to that municipality: its own links only).
pub fn incident(
    settings: &Settings,
    contact: &Contact,
    inc: &Incident,
    news: IncidentNews,
) -> Message {
    let url = format!(
        "{}incidents/{}",
        settings.dashboard_url.as_str(),
        varde_core::EventId(inc.incident_id)
    );
    if !may_carry(inc.tlp, contact, contact.tenant()) {
        return notice(contact, "incident", inc.tlp, url);
    }
    let lang = contact.language;
    let l = label(inc.tlp);
    let what = match news {
        IncidentNews::Opened => tr(lang, "Ny hendelse", "New incident"),
        IncidentNews::Updated => tr(lang, "Hendelse oppdatert", "Incident updated"),
        IncidentNews::Closed => tr(lang, "Hendelse lukket", "Incident closed"),
    };
    let status = status_name(lang, inc.status);
    let severity = inc.severity.as_str();
    let title = cut(&inc.title);
    let subject = format!("[{l}] Varde: {what} ({})", whose(contact));
    let more = if inc.extra_municipalities.is_empty() {
        ""
    } else {
        tr(
            lang,
            "Flere kommuner er berørt.",
            "Several municipalities are affected.",
        )
    };
    let text = format!(
        "{l}\n\n{what}: {title}\n{}: {status}\n{}: {severity}\n{}: {}\n{more}\n\n{url}\n",
        tr(lang, "Status", "Status"),
        tr(lang, "Alvorlighet", "Severity"),
        tr(lang, "Oppdaget", "Aware since"),
        time(inc.aware_at_us),
    );
    let html = page(
        &l,
        html! {
            p { strong { (what) } ": " (title) }
            ul {
                li { (tr(lang, "Status", "Status")) ": " (status) }
                li { (tr(lang, "Alvorlighet", "Severity")) ": " (severity) }
                li { (tr(lang, "Oppdaget", "Aware since")) ": " (time(inc.aware_at_us)) }
            }
            @if !more.is_empty() { p { (more) } }
            p { a href=(url) { (tr(lang, "Hendelsen i Varde", "The incident in Varde")) } }
        },
    );
    Message {
        kind: "incident",
        tlp: inc.tlp,
        subject,
        text,
        html,
        url,
        counts: Vec::new(),
        span: None,
    }
}

fn status_name(lang: Language, s: IncidentStatus) -> &'static str {
    match s {
        IncidentStatus::New => tr(lang, "ny", "new"),
        IncidentStatus::Triage => tr(lang, "vurderes", "triage"),
        IncidentStatus::Containment => tr(lang, "begrenses", "containment"),
        IncidentStatus::Eradication => tr(lang, "fjernes", "eradication"),
        IncidentStatus::Recovery => tr(lang, "gjenopprettes", "recovery"),
        IncidentStatus::PostIncident => tr(lang, "etterarbeid", "post-incident"),
        IncidentStatus::Closed => tr(lang, "lukket", "closed"),
    }
}

/// A message that one of the municipality's collectors has sent nothing since `last_us`
/// (labelled TLP:GREEN: it says nothing about an attack).
pub fn collector_silent(
    settings: &Settings,
    contact: &Contact,
    collector: &str,
    last_us: i64,
) -> Message {
    let lang = contact.language;
    let tlp = Tlp::Green;
    let l = label(tlp);
    let url = match contact.tenant() {
        Some(k) => format!(
            "{}municipalities/{}",
            settings.dashboard_url.as_str(),
            k.as_str()
        ),
        None => settings.dashboard_url.to_string(),
    };
    let what = tr(lang, "En innsamler er stille", "A collector is silent");
    let subject = format!("[{l}] Varde: {what} ({})", whose(contact));
    let since = format!(
        "{} {collector} {} {}.",
        tr(lang, "Innsamleren", "The collector"),
        tr(lang, "har ikke sendt noe siden", "has sent nothing since"),
        time(last_us)
    );
    let todo = tr(
        lang,
        "Sjekk at maskinen kjører, at tjenesten varde-collector er startet, og at den når CERT-ets Kafka.",
        "Check that the machine runs, that the varde-collector service is started, and that it reaches the CERT's Kafka.",
    );
    let text = format!("{l}\n\n{what}.\n{since}\n{todo}\n\n{url}\n");
    let html = page(
        &l,
        html! {
            p { strong { (what) } }
            p { (since) }
            p { (todo) }
            p { a href=(url) { (url) } }
        },
    );
    Message {
        kind: "collector_silent",
        tlp,
        subject,
        text,
        html,
        url,
        counts: Vec::new(),
        span: None,
    }
}

/// A test message (the dashboard's "send test"), TLP:CLEAR.
pub fn test_message(settings: &Settings, contact: &Contact, at_us: i64) -> Message {
    let lang = contact.language;
    let tlp = Tlp::Clear;
    let l = label(tlp);
    let url = settings.dashboard_url.to_string();
    let what = tr(lang, "Testmelding", "Test message");
    let body = tr(
        lang,
        "Denne meldingen bekrefter at Varde når dere. Dere trenger ikke gjøre noe.",
        "This message confirms that Varde reaches you. You need not do anything.",
    );
    let subject = format!("[{l}] Varde: {what} ({})", whose(contact));
    let text = format!("{l}\n\n{what}, {}.\n{body}\n\n{url}\n", time(at_us));
    let html = page(
        &l,
        html! { p { strong { (what) } ", " (time(at_us)) "." } p { (body) } p { a href=(url) { (url) } } },
    );
    Message {
        kind: "test",
        tlp,
        subject,
        text,
        html,
        url,
        counts: Vec::new(),
        span: None,
    }
}

/// The body of a `varde` webhook (schema `varde.notification/v1`, docs/notifications.md).
pub fn varde_payload(id: &str, created_us: i64, contact: &Contact, m: &Message) -> String {
    let municipality = contact
        .tenant()
        .map(|k| json!({"number": k.as_str(), "name": k.name()}));
    let component = match &contact.scope {
        Scope::Component(c) => Some(c.clone()),
        Scope::Municipality(_) => None,
    };
    let rfc = |us: i64| varde_core::time::format_rfc3339(us);
    json!({
        "schema": "varde.notification/v1",
        "id": id,
        "kind": m.kind,
        "tlp": label(m.tlp),
        "created": rfc(created_us),
        "municipality": municipality,
        "component": component,
        "subject": m.subject,
        "text": m.text,
        "url": m.url,
        "span": m.span.map(|(f, t)| json!({"from": rfc(f), "to": rfc(t)})),
        "counts": m.counts.iter().map(|c| json!({
            "rule": c.rule,
            "rule_id": c.rule_id,
            "level": c.level,
            "component": c.component,
            "alerts": c.alerts,
            "municipalities": c.municipalities,
            "campaign": c.campaign,
            "url": c.newest,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The body of a Mattermost or Slack incoming webhook.
pub fn slack_payload(m: &Message) -> String {
    json!({ "text": format!("*{}*\n\n{}", m.subject, m.text) }).to_string()
}

/// The body of a Microsoft Teams workflow webhook: one Adaptive Card.
pub fn teams_payload(m: &Message) -> String {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": m.subject, "weight": "Bolder", "wrap": true},
                    {"type": "TextBlock", "text": m.text, "wrap": true}
                ],
                "actions": [{"type": "Action.OpenUrl", "title": "Varde", "url": m.url}]
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use varde_core::{AlertId, EventId};

    fn settings() -> Settings {
        Settings::new(
            "https://varde.cert.example/".parse().expect("url"),
            "Varde CERT <varde@cert.example>".parse().expect("from"),
        )
    }

    fn contact(tenant: &str, named: bool) -> Contact {
        Contact {
            name: "IT".into(),
            scope: Scope::Municipality(Kommunenummer::parse(tenant).expect("k")),
            target: Target::Email("it@example.no".parse().expect("addr")),
            language: Language::En,
            named,
            alerts: Some(Level::High),
            incidents: true,
            campaigns: true,
            collector_silent: None,
        }
    }

    fn alert(tenant: &str, n: u8, level: &str, title: &str) -> Alert {
        Alert {
            alert_id: AlertId([n; 16]),
            dedup_key: [n; 16],
            tenant: tenant.into(),
            component: "idporten".into(),
            rule_id: format!("r{}", title.len()),
            rule_title: title.into(),
            rule_level: level.into(),
            rule_tags: vec![],
            event_id: EventId([n; 16]),
            event_time_us: 1_796_119_200_000_000 + i64::from(n),
            detect_time_us: 1_796_119_201_000_000,
            source_kind: "auth".into(),
            host: "h".into(),
            matched: vec![],
        }
    }

    #[test]
    fn tlp_decides_who_gets_content() {
        let oslo_named = contact("0301", true);
        let oslo_mailbox = contact("0301", false);
        let oslo = Kommunenummer::parse("0301").ok();
        let bergen = Kommunenummer::parse("4601").ok();
        assert!(may_carry(Tlp::Clear, &oslo_mailbox, oslo));
        assert!(may_carry(Tlp::Green, &oslo_mailbox, oslo));
        assert!(may_carry(Tlp::Amber, &oslo_named, oslo));
        assert!(may_carry(Tlp::AmberStrict, &oslo_named, oslo));
        assert!(!may_carry(Tlp::Amber, &oslo_mailbox, oslo));
        assert!(!may_carry(Tlp::Amber, &oslo_named, bergen));
        assert!(!may_carry(Tlp::Red, &oslo_named, oslo));
    }

    #[test]
    fn a_digest_counts_per_rule_says_what_to_do_and_carries_its_label() {
        let s = settings();
        let c = contact("0301", true);
        let a = [
            alert("0301", 1, "high", "Failed logins"),
            alert("0301", 2, "high", "Failed logins"),
            alert("0301", 3, "critical", "Root login"),
        ];
        let refs: Vec<&Alert> = a.iter().collect();
        let m = digest(&s, &c, &refs, (0, 900_000_000), false);
        assert!(m.subject.starts_with("[TLP:AMBER] "), "{}", m.subject);
        assert!(m.text.starts_with("TLP:AMBER\n"), "{}", m.text);
        assert!(m.html.contains("TLP:AMBER"));
        assert_eq!(m.counts.len(), 2);
        assert_eq!(
            (m.counts[0].rule.as_str(), m.counts[0].alerts),
            ("Root login", 1)
        );
        assert_eq!(m.counts[1].alerts, 2);
        assert!(m.text.contains("What to do first"));
        assert!(m.text.contains(&format!(
            "https://varde.cert.example/alerts/{}",
            AlertId([3; 16])
        )));
    }

    #[test]
    fn red_and_unnamed_amber_get_only_a_notice() {
        let s = settings();
        let a = [alert("0301", 1, "high", "Secret rule name")];
        let refs: Vec<&Alert> = a.iter().collect();
        let m = digest(&s, &contact("0301", false), &refs, (0, 1), false);
        assert!(!m.text.contains("Secret rule name") && !m.html.contains("Secret rule name"));
        assert!(m.text.contains("Log in to Varde"));
        assert!(m.subject.starts_with("[TLP:AMBER] "));
        assert!(m.counts.is_empty());
        let inc = Incident {
            incident_id: [9; 16],
            title: "Ransomware at the city's file servers".into(),
            status: IncidentStatus::Containment,
            severity: varde_store::incident::Severity::High,
            tlp: Tlp::Red,
            aware_at_us: 1,
            opened_at_us: 1,
            opened_by: "kari".into(),
            changed_at_us: 1,
            groups: vec![],
            extra_municipalities: vec![],
            extra_components: vec![],
            comments: vec![],
            category: String::new(),
            root_cause: String::new(),
            users_affected: None,
        };
        let m = incident(&s, &contact("0301", true), &inc, IncidentNews::Opened);
        assert!(m.subject.starts_with("[TLP:RED] "));
        assert!(!m.text.contains("Ransomware") && !m.html.contains("Ransomware"));
        assert!(m.text.contains("An incident needs your attention"));
    }

    #[test]
    fn a_rule_title_with_a_line_break_stays_in_the_body() {
        let s = settings();
        let a = [alert("0301", 1, "high", "x\r\nBcc: evil@example.com")];
        let refs: Vec<&Alert> = a.iter().collect();
        let m = digest(&s, &contact("0301", true), &refs, (0, 1), false);
        assert!(!m.subject.contains('\n') && !m.subject.contains("evil"));
    }

    #[test]
    fn campaign_rows_say_several_municipalities_never_which() {
        let s = settings();
        let mut a = alert("0301", 1, "low", "Spray");
        a.matched = vec![("correlation.scope".into(), "several municipalities".into())];
        let c = contact("0301", true);
        assert!(wants(&c, &a), "a campaign is wanted whatever its level");
        let m = digest(&s, &c, &[&a], (0, 1), false);
        assert!(
            m.text
                .contains("part of a campaign against several municipalities")
        );
        assert!(!m.text.contains("Bergen") && !m.text.contains("4601"));
    }
}
