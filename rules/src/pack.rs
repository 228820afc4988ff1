//! Varde's own rule pack (`rules/sigma/`), built into the binaries so that `varde demo` and a
//! pipeline without configured rule paths detect with it. A test checks that this list and the
//! folder hold the same files.

/// Every rule file of the pack: (file name, YAML text).
pub const PACK: &[(&str, &str)] = &[
    (
        "lnx_sshd_admin_login_burst.yml",
        include_str!("../sigma/lnx_sshd_admin_login_burst.yml"),
    ),
    (
        "lnx_sshd_failed_admin_login.yml",
        include_str!("../sigma/lnx_sshd_failed_admin_login.yml"),
    ),
    (
        "lnx_sshd_root_password_login.yml",
        include_str!("../sigma/lnx_sshd_root_password_login.yml"),
    ),
    (
        "oidc_idporten_assurance_downgrade.yml",
        include_str!("../sigma/oidc_idporten_assurance_downgrade.yml"),
    ),
    (
        "oidc_idporten_login_failure.yml",
        include_str!("../sigma/oidc_idporten_login_failure.yml"),
    ),
    (
        "oidc_idporten_spray_campaign.yml",
        include_str!("../sigma/oidc_idporten_spray_campaign.yml"),
    ),
    (
        "oidc_idporten_scripted_user_agent.yml",
        include_str!("../sigma/oidc_idporten_scripted_user_agent.yml"),
    ),
    (
        "oidc_idporten_unexpected_client.yml",
        include_str!("../sigma/oidc_idporten_unexpected_client.yml"),
    ),
    (
        "web_exploit_campaign.yml",
        include_str!("../sigma/web_exploit_campaign.yml"),
    ),
    (
        "web_jndi_injection.yml",
        include_str!("../sigma/web_jndi_injection.yml"),
    ),
    (
        "web_known_exploited_paths.yml",
        include_str!("../sigma/web_known_exploited_paths.yml"),
    ),
    (
        "web_path_traversal.yml",
        include_str!("../sigma/web_path_traversal.yml"),
    ),
    (
        "win_remote_access_tool_execution.yml",
        include_str!("../sigma/win_remote_access_tool_execution.yml"),
    ),
];

/// Adds every rule of the pack to `builder`, named `rules/sigma/<file>`.
pub fn add_pack(builder: &mut crate::RuleSetBuilder) {
    for (name, text) in PACK {
        builder.add_yaml(&format!("rules/sigma/{name}"), text);
    }
}
