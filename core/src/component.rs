//! The registry of shared public digital components (ID-porten, Altinn, …) and how to recognise
//! their traffic: DNS names and address ranges.
//!
//! The built-in registry (`core/data/components.toml`) holds each component's public service
//! domains. Deployments extend it with the same TOML shape: an entry with a known `id` adds names
//! and networks to that component, a new `id` adds a component.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::Error;

const BUILTIN: &str = include_str!("../data/components.toml");

/// One shared component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Stable id, e.g. `idporten`; stored in events and alerts.
    pub id: String,
    /// Display name, e.g. `ID-porten`.
    pub name: String,
    /// The agency that runs it.
    pub owner: String,
    /// DNS names; a name matches itself and every subdomain. Lowercase, no trailing dot.
    pub hostnames: Vec<String>,
    /// Address ranges.
    pub networks: Vec<IpNet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    component: Vec<ComponentEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentEntry {
    id: String,
    name: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    networks: Vec<IpNet>,
}

/// The set of known components, with lookups by host name and address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentRegistry {
    components: Vec<Component>,
}

impl ComponentRegistry {
    /// The registry shipped with Varde.
    pub fn builtin() -> Self {
        let mut r = ComponentRegistry::default();
        // The shipped file is checked by a unit test; an error here cannot happen at runtime.
        if let Err(e) = r.extend_from_toml(BUILTIN) {
            debug_assert!(false, "built-in component registry is invalid: {e}");
        }
        r
    }

    /// Adds components, names and networks from TOML text in the registry's format.
    ///
    /// An entry whose `id` is already known extends that component (new names/networks are
    /// added, `name`/`owner` replace the old ones when given); a new `id` needs a `name`.
    pub fn extend_from_toml(&mut self, text: &str) -> Result<(), Error> {
        let file: RegistryFile =
            toml::from_str(text).map_err(|e| Error::Registry(e.to_string()))?;
        for entry in file.component {
            if entry.id.is_empty()
                || !entry
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(Error::Registry(format!(
                    "component id '{}' must be lowercase letters, digits and '-'",
                    entry.id
                )));
            }
            let mut hostnames = Vec::with_capacity(entry.hostnames.len());
            for h in entry.hostnames {
                hostnames.push(normalise_host(&h).ok_or_else(|| {
                    Error::Registry(format!("component '{}': '{h}' is not a DNS name", entry.id))
                })?);
            }
            match self.components.iter_mut().find(|c| c.id == entry.id) {
                Some(c) => {
                    if let Some(name) = entry.name {
                        c.name = name;
                    }
                    if let Some(owner) = entry.owner {
                        c.owner = owner;
                    }
                    for h in hostnames {
                        if !c.hostnames.contains(&h) {
                            c.hostnames.push(h);
                        }
                    }
                    for n in entry.networks {
                        if !c.networks.contains(&n) {
                            c.networks.push(n);
                        }
                    }
                }
                None => {
                    let name = entry.name.ok_or_else(|| {
                        Error::Registry(format!("new component '{}' needs a name", entry.id))
                    })?;
                    self.components.push(Component {
                        id: entry.id,
                        name,
                        owner: entry.owner.unwrap_or_default(),
                        hostnames,
                        networks: entry.networks,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every component, in registry order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component with this id.
    pub fn get(&self, id: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.id == id)
    }

    /// The component a DNS name belongs to: the one with the longest matching name, so that
    /// `data.brreg.no` can belong to another component than `brreg.no`.
    pub fn match_host(&self, host: &str) -> Option<&Component> {
        let host = normalise_host(host)?;
        self.components
            .iter()
            .flat_map(|c| c.hostnames.iter().map(move |h| (c, h)))
            .filter(|(_, h)| {
                host == **h
                    || (host.len() > h.len()
                        && host.ends_with(h.as_str())
                        && host.as_bytes()[host.len() - h.len() - 1] == b'.')
            })
            .max_by_key(|(_, h)| h.len())
            .map(|(c, _)| c)
    }

    /// The component an address belongs to: the one with the most specific matching network.
    pub fn match_ip(&self, ip: IpAddr) -> Option<&Component> {
        self.components
            .iter()
            .flat_map(|c| c.networks.iter().map(move |n| (c, n)))
            .filter(|(_, n)| n.contains(&ip))
            .max_by_key(|(_, n)| n.prefix_len())
            .map(|(c, _)| c)
    }
}

/// Lowercases and strips one trailing dot; `None` when the text cannot be a DNS name.
fn normalise_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_has_the_shared_components() {
        let mut r = ComponentRegistry::default();
        r.extend_from_toml(BUILTIN)
            .expect("built-in registry parses");
        for id in [
            "idporten",
            "altinn",
            "digital-postkasse",
            "folkeregisteret",
            "krr",
            "matrikkelen",
            "enhetsregisteret",
            "fiks",
            "helsenorge",
            "nav",
        ] {
            assert!(r.get(id).is_some(), "{id} missing");
        }
        assert_eq!(ComponentRegistry::builtin(), r);
    }

    #[test]
    fn hosts_match_on_label_boundaries_longest_first() {
        let r = ComponentRegistry::builtin();
        let id = |h: &str| r.match_host(h).map(|c| c.id.as_str());
        assert_eq!(id("login.idporten.no"), Some("idporten"));
        assert_eq!(id("IDPORTEN.NO."), Some("idporten"));
        assert_eq!(id("notidporten.no"), None);
        assert_eq!(id("www.nav.no"), Some("nav"));
        assert_eq!(id("api.fiks.ks.no"), Some("fiks"));
        assert_eq!(id("ks.no"), None);
        assert_eq!(id("not a host"), None);
    }

    #[test]
    fn config_extends_and_adds() {
        let mut r = ComponentRegistry::builtin();
        r.extend_from_toml(
            r#"
            [[component]]
            id = "altinn"
            networks = ["192.0.2.0/24"]
            hostnames = ["altinn.example"]

            [[component]]
            id = "kommune-sak"
            name = "Kommunens sak/arkiv"
            networks = ["192.0.2.128/25"]
            "#,
        )
        .expect("valid extension");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            r.match_ip(ip("192.0.2.1")).map(|c| c.id.as_str()),
            Some("altinn")
        );
        assert_eq!(
            r.match_ip(ip("192.0.2.200")).map(|c| c.id.as_str()),
            Some("kommune-sak")
        );
        assert_eq!(r.match_ip(ip("198.51.100.1")), None);
        assert_eq!(
            r.match_host("x.altinn.example").map(|c| c.id.as_str()),
            Some("altinn")
        );

        let err = r
            .extend_from_toml("[[component]]\nid = \"new\"\n")
            .expect_err("name required");
        assert!(err.to_string().contains("needs a name"), "{err}");
        let err = r
            .extend_from_toml("[[component]]\nid = \"x\"\nname = \"X\"\nbogus = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
