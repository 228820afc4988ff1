//! The registry of enrolled collectors and their enrolment tokens, both append-only.
//!
//! A collector's identity is the history of its [`IdentityRecord`]s: a key added at enrolment
//! (bound to one tenant), keys added by rotations, the moment an old key stops being valid, and
//! revocations. [`CollectorRegistry::fold`] turns the history into what the pipeline verifies
//! envelopes against and the dashboard lists; nothing is ever updated in place, so the audit
//! log is the table itself.
//!
//! An enrolment token is [`TokenRecord`]s too: issued (with the hash of its secret, never the
//! secret), then used once by the collector it enrolled. The dashboard refuses a token with a
//! `used` row.

use std::collections::BTreeMap;
use std::future::Future;

use varde_core::identity::{KeyId, PublicKey};
use varde_core::{CollectorId, Kommunenummer};

use crate::Result;

/// What an identity record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityAction {
    /// A public key becomes valid for the collector and tenant (enrolment, rotation, or a key
    /// an administrator registered).
    KeyAdded,
    /// The key (`key_id`) stops being valid at `until_us` (the end of a rotation's overlap).
    KeyExpires,
    /// The key (`key_id`), or every key of the collector when `key_id` is empty, is revoked
    /// from `at_us` on.
    Revoked,
}

impl IdentityAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityAction::KeyAdded => "key_added",
            IdentityAction::KeyExpires => "key_expires",
            IdentityAction::Revoked => "revoked",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<IdentityAction> {
        match text {
            "key_added" => Some(IdentityAction::KeyAdded),
            "key_expires" => Some(IdentityAction::KeyExpires),
            "revoked" => Some(IdentityAction::Revoked),
            _ => None,
        }
    }
}

/// One change to a collector's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// When, µs since the epoch.
    pub at_us: i64,
    /// The collector.
    pub collector_id: String,
    /// Its tenant (the same on every record of a collector; the first `KeyAdded` decides).
    pub tenant: String,
    /// The collector's name, as the CERT gave it ("Oslo DMZ").
    pub name: String,
    /// What happened.
    pub action: IdentityAction,
    /// The key concerned (16 hex digits); empty for a revocation of the whole collector.
    pub key_id: String,
    /// `KeyAdded`: the public key (64 hex digits); empty otherwise.
    pub public_key: String,
    /// `KeyExpires`: when the key stops being valid, µs; 0 otherwise.
    pub until_us: i64,
    /// Who did it (`admin:<user>`, `collector:<id>` for a rotation the collector asked for).
    pub actor: String,
    /// Why (free text from the administrator, or `enrolment`, `rotation`).
    pub reason: String,
}

impl IdentityRecord {
    /// `key` becomes valid for collector `id` of `tenant` at `at_us`.
    pub fn key_added(
        at_us: i64,
        id: &CollectorId,
        tenant: Kommunenummer,
        name: &str,
        key: &PublicKey,
        actor: &str,
        reason: &str,
    ) -> IdentityRecord {
        IdentityRecord {
            at_us,
            collector_id: id.to_string(),
            tenant: tenant.to_string(),
            name: name.to_owned(),
            action: IdentityAction::KeyAdded,
            key_id: key.key_id().to_string(),
            public_key: key.to_string(),
            until_us: 0,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Collector `c` is revoked at `at_us` (every key when `key` is `None`).
    pub fn revoked(
        at_us: i64,
        c: &CollectorIdentity,
        key: Option<KeyId>,
        actor: &str,
        reason: &str,
    ) -> IdentityRecord {
        IdentityRecord {
            at_us,
            collector_id: c.collector_id.to_string(),
            tenant: c.tenant.to_string(),
            name: c.name.clone(),
            action: IdentityAction::Revoked,
            key_id: key.map_or_else(String::new, |k| k.to_string()),
            public_key: String::new(),
            until_us: 0,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Key `key` of collector `c` stops being valid at `until_us` (recorded at `at_us`).
    pub fn key_expires(
        at_us: i64,
        c: &CollectorIdentity,
        key: KeyId,
        until_us: i64,
        actor: &str,
        reason: &str,
    ) -> IdentityRecord {
        IdentityRecord {
            at_us,
            collector_id: c.collector_id.to_string(),
            tenant: c.tenant.to_string(),
            name: c.name.clone(),
            action: IdentityAction::KeyExpires,
            key_id: key.to_string(),
            public_key: String::new(),
            until_us,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// What an enrolment token record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenAction {
    /// The CERT made the token.
    Issued,
    /// A collector enrolled with it.
    Used,
}

impl TokenAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAction::Issued => "issued",
            TokenAction::Used => "used",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<TokenAction> {
        match text {
            "issued" => Some(TokenAction::Issued),
            "used" => Some(TokenAction::Used),
            _ => None,
        }
    }
}

/// One event in an enrolment token's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// When, µs since the epoch.
    pub at_us: i64,
    /// The token's public id (hex).
    pub token_id: String,
    /// `Issued`: SHA-256 of the token's secret, hex. Empty otherwise.
    pub secret_hash: String,
    /// The municipality the collector will belong to.
    pub tenant: String,
    /// The collector's name.
    pub name: String,
    /// `Issued`: when the token expires, µs.
    pub expires_us: i64,
    /// What happened.
    pub action: TokenAction,
    /// `Used`: the collector it enrolled.
    pub collector_id: String,
    /// Who (`admin:<user>` for issued, `collector:<id>` for used).
    pub actor: String,
}

/// The collector registry of a store.
pub trait Collectors {
    /// Appends identity records.
    fn write_identity(
        &self,
        records: &[IdentityRecord],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Every identity record, oldest first.
    fn identity_log(&self) -> impl Future<Output = Result<Vec<IdentityRecord>>> + Send;

    /// A cheap fingerprint of the identity log (rows, newest `at_us`): the pipeline reloads the
    /// registry when it changes.
    fn identity_version(&self) -> impl Future<Output = Result<(u64, i64)>> + Send;

    /// Appends token records.
    fn write_tokens(&self, records: &[TokenRecord]) -> impl Future<Output = Result<u64>> + Send;

    /// The records of one token (all tokens when `None`), oldest first.
    fn tokens(
        &self,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
}

/// A key of an enrolled collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// Its id.
    pub key_id: KeyId,
    /// The public key.
    pub public_key: PublicKey,
    /// When it was added, µs.
    pub added_us: i64,
    /// When it stops being valid (the end of a rotation's overlap), µs.
    pub expires_us: Option<i64>,
    /// When it was revoked, µs.
    pub revoked_us: Option<i64>,
}

impl KeyState {
    /// Whether the key signs valid envelopes at `now_us`.
    pub fn valid_at(&self, now_us: i64) -> bool {
        self.revoked_us.is_none_or(|r| now_us < r) && self.expires_us.is_none_or(|e| now_us < e)
    }
}

/// One enrolled collector, folded from its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorIdentity {
    /// Its id.
    pub collector_id: CollectorId,
    /// The only tenant its keys sign for.
    pub tenant: Kommunenummer,
    /// Its name.
    pub name: String,
    /// Its keys, oldest first.
    pub keys: Vec<KeyState>,
    /// When the whole collector was revoked, µs.
    pub revoked_us: Option<i64>,
    /// When it was enrolled (its first key), µs.
    pub enrolled_us: i64,
}

impl CollectorIdentity {
    /// The key with id `key_id`, valid or not.
    pub fn key(&self, key_id: KeyId) -> Option<&KeyState> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// Whether the collector may send at `now_us` (not revoked, a valid key).
    pub fn active_at(&self, now_us: i64) -> bool {
        self.revoked_us.is_none_or(|r| now_us < r) && self.keys.iter().any(|k| k.valid_at(now_us))
    }
}

/// Every enrolled collector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorRegistry {
    /// By collector id.
    pub collectors: BTreeMap<CollectorId, CollectorIdentity>,
    /// Records that could not be applied (bad ids, keys or tenants; a key claimed by another
    /// collector; a later record naming another tenant), each with why: an operator's problem to
    /// look at, never a reason to trust the record.
    pub refused: Vec<String>,
}

impl CollectorRegistry {
    /// Folds the identity log (any order; applied oldest first).
    pub fn fold(records: &[IdentityRecord]) -> CollectorRegistry {
        let mut sorted: Vec<&IdentityRecord> = records.iter().collect();
        sorted.sort_by_key(|r| r.at_us);
        let mut registry = CollectorRegistry::default();
        let mut key_owner: BTreeMap<KeyId, CollectorId> = BTreeMap::new();
        for r in sorted {
            if let Err(why) = registry.apply(r, &mut key_owner) {
                registry.refused.push(format!(
                    "{} {} of collector {:?}: {why}",
                    r.at_us,
                    r.action.as_str(),
                    r.collector_id
                ));
            }
        }
        registry
    }

    fn apply(
        &mut self,
        r: &IdentityRecord,
        key_owner: &mut BTreeMap<KeyId, CollectorId>,
    ) -> std::result::Result<(), String> {
        let id = CollectorId::new(r.collector_id.clone()).map_err(|e| e.to_string())?;
        let tenant = Kommunenummer::parse(&r.tenant).map_err(|e| e.to_string())?;
        let key_id = if r.key_id.is_empty() {
            None
        } else {
            Some(KeyId::parse(&r.key_id).ok_or_else(|| format!("bad key id {:?}", r.key_id))?)
        };
        if let Some(existing) = self.collectors.get(&id)
            && existing.tenant != tenant
        {
            return Err(format!(
                "names tenant {tenant}, but the collector was enrolled for {}",
                existing.tenant
            ));
        }
        match r.action {
            IdentityAction::KeyAdded => {
                let public = PublicKey::parse(&r.public_key).map_err(|e| e.to_string())?;
                if key_id.is_some_and(|k| k != public.key_id()) {
                    return Err("key id does not belong to the public key".into());
                }
                let key_id = public.key_id();
                if let Some(owner) = key_owner.get(&key_id)
                    && owner != &id
                {
                    return Err(format!("key {key_id} already belongs to collector {owner}"));
                }
                key_owner.insert(key_id, id.clone());
                let entry =
                    self.collectors
                        .entry(id.clone())
                        .or_insert_with(|| CollectorIdentity {
                            collector_id: id,
                            tenant,
                            name: r.name.clone(),
                            keys: Vec::new(),
                            revoked_us: None,
                            enrolled_us: r.at_us,
                        });
                if !r.name.is_empty() {
                    entry.name = r.name.clone();
                }
                if entry.key(key_id).is_none() {
                    entry.keys.push(KeyState {
                        key_id,
                        public_key: public,
                        added_us: r.at_us,
                        expires_us: None,
                        revoked_us: None,
                    });
                }
                Ok(())
            }
            IdentityAction::KeyExpires => {
                let entry = self.collectors.get_mut(&id).ok_or("unknown collector")?;
                let key_id = key_id.ok_or("no key id")?;
                let key = entry
                    .keys
                    .iter_mut()
                    .find(|k| k.key_id == key_id)
                    .ok_or("unknown key")?;
                key.expires_us = Some(key.expires_us.map_or(r.until_us, |e| e.min(r.until_us)));
                Ok(())
            }
            IdentityAction::Revoked => {
                let entry = self.collectors.get_mut(&id).ok_or("unknown collector")?;
                match key_id {
                    None => {
                        entry.revoked_us.get_or_insert(r.at_us);
                    }
                    Some(key_id) => {
                        let key = entry
                            .keys
                            .iter_mut()
                            .find(|k| k.key_id == key_id)
                            .ok_or("unknown key")?;
                        key.revoked_us.get_or_insert(r.at_us);
                    }
                }
                Ok(())
            }
        }
    }

    /// The collector with this id.
    pub fn get(&self, id: &CollectorId) -> Option<&CollectorIdentity> {
        self.collectors.get(id)
    }

    /// The tenants with at least one collector active at `now_us`.
    pub fn signing_tenants(&self, now_us: i64) -> Vec<Kommunenummer> {
        let mut tenants: Vec<Kommunenummer> = self
            .collectors
            .values()
            .filter(|c| c.active_at(now_us))
            .map(|c| c.tenant)
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varde_core::CollectorKey;

    fn added(at: i64, id: &str, tenant: &str, key: &CollectorKey) -> IdentityRecord {
        IdentityRecord {
            at_us: at,
            collector_id: id.into(),
            tenant: tenant.into(),
            name: format!("{id} name"),
            action: IdentityAction::KeyAdded,
            key_id: key.key_id().to_string(),
            public_key: key.public_key().to_string(),
            until_us: 0,
            actor: "admin:test".into(),
            reason: "enrolment".into(),
        }
    }

    #[test]
    fn rotation_overlap_and_revocation_fold_to_the_right_validity() {
        let (old, _) = CollectorKey::generate().expect("key");
        let (new, _) = CollectorKey::generate().expect("key");
        let mut log = vec![
            added(10, "k0301-a", "0301", &old),
            added(20, "k0301-a", "0301", &new),
        ];
        log.push(IdentityRecord {
            action: IdentityAction::KeyExpires,
            until_us: 30,
            public_key: String::new(),
            ..added(20, "k0301-a", "0301", &old)
        });
        let reg = CollectorRegistry::fold(&log);
        let c = reg
            .get(&CollectorId::new("k0301-a").expect("id"))
            .expect("enrolled");
        assert!(c.key(old.key_id()).expect("old").valid_at(29));
        assert!(!c.key(old.key_id()).expect("old").valid_at(30));
        assert!(c.key(new.key_id()).expect("new").valid_at(1_000));
        log.push(IdentityRecord {
            action: IdentityAction::Revoked,
            key_id: String::new(),
            public_key: String::new(),
            ..added(40, "k0301-a", "0301", &new)
        });
        let reg = CollectorRegistry::fold(&log);
        let c = reg
            .get(&CollectorId::new("k0301-a").expect("id"))
            .expect("enrolled");
        assert!(c.active_at(39));
        assert!(!c.active_at(40));
        assert!(reg.signing_tenants(40).is_empty());
    }

    #[test]
    fn a_record_naming_another_tenant_or_a_taken_key_is_refused_not_applied() {
        let (key, _) = CollectorKey::generate().expect("key");
        let (other, _) = CollectorKey::generate().expect("key");
        let log = vec![
            added(10, "k0301-a", "0301", &key),
            added(11, "k0301-a", "4601", &other),
            added(12, "k4601-b", "4601", &key),
        ];
        let reg = CollectorRegistry::fold(&log);
        let c = reg
            .get(&CollectorId::new("k0301-a").expect("id"))
            .expect("enrolled");
        assert_eq!(c.keys.len(), 1);
        assert_eq!(c.tenant.as_str(), "0301");
        assert!(reg.get(&CollectorId::new("k4601-b").expect("id")).is_none());
        assert_eq!(reg.refused.len(), 2, "{:?}", reg.refused);
    }
}
