//! sshd and sudo lines into `auth` events.
//!
//! Only lines whose syslog program is `sshd`, `sshd-session` (OpenSSH 9.8 and later) or `sudo`
//! are looked at. Every line of those programs becomes an `auth` event (so that Sigma's
//! `linux/sshd` and `linux/sudo` rules, routed to `auth`, see all of them); these messages also
//! fill the columns below, the others only `program` ([`program_only`]):
//!
//! | message | `outcome` | `auth_method` |
//! |---|---|---|
//! | `Accepted <method> for <user> from <ip> port <port> ssh2[: <key>]` | `success` | `<method>` |
//! | `Failed <method> for [invalid user ]<user> from <ip> port <port> ssh2` | `failure` | `<method>` |
//! | `Invalid user <user> from <ip>[ port <port>]` | `failure` | — |
//! | `error: maximum authentication attempts exceeded for [invalid user ]<user> from <ip> port <port> …` | `failure` | — |
//! | sudo: `<user> : [<reason> ; ]TTY=… ; PWD=… ; USER=<target> ; [GROUP=… ; ][ENV=… ; ]COMMAND=<command>` | `success`, or `failure` with a reason | — |
//!
//! `program`, `user`, `src_ip`, `src_port`, `target_user` and `command` are filled as they
//! apply; an invalid user is marked `ssh.invalid_user = true`, the key of a publickey login is
//! kept as `ssh.key`, and sudo's reason, TTY, working directory and group as `sudo.reason`,
//! `sudo.tty`, `sudo.pwd`, `sudo.group`. User names may contain spaces (sshd logs what the
//! client sent), so they are matched up to the last ` from `.

use varde_core::{SourceKind, Value};

use super::{Outcome, Parsed, static_regex};

/// An `auth` event of `program` that is neither a login nor a command (sshd's "Connection
/// closed", "Server listening", …): only the program is filled, the message stays as it was.
pub fn program_only(program: &str) -> Parsed {
    let mut p = Parsed::new(SourceKind::Auth);
    p.text("program", program);
    p
}

/// True for the syslog program names of sshd.
pub fn is_sshd(program: &str) -> bool {
    matches!(program, "sshd" | "sshd-session")
}

/// Parses an sshd message.
pub fn parse_sshd(program: &str, msg: &str) -> Outcome {
    let msg = msg.trim_end();
    let login = static_regex!(concat!(
        r"^(?P<outcome>Accepted|Failed) (?P<method>[A-Za-z0-9/_-]+) for (?P<invalid>invalid user )?",
        r"(?P<user>.*) from (?P<ip>[0-9A-Fa-f:.]+) port (?P<port>[0-9]{1,5})(?: ssh2)?(?:: (?P<key>.*))?$",
    ));
    let invalid = static_regex!(
        r"^Invalid user (?P<user>.*) from (?P<ip>[0-9A-Fa-f:.]+)(?: port (?P<port>[0-9]{1,5}))?$"
    );
    let too_many = static_regex!(concat!(
        r"^error: maximum authentication attempts exceeded for (?P<invalid>invalid user )?",
        r"(?P<user>.*) from (?P<ip>[0-9A-Fa-f:.]+) port (?P<port>[0-9]{1,5})(?: ssh2)?(?: \[preauth\])?$",
    ));
    let (Some(login), Some(invalid), Some(too_many)) = (login, invalid, too_many) else {
        return Outcome::NotMine;
    };
    let mut p = Parsed::new(SourceKind::Auth);
    p.text("program", program);
    let c = if let Some(c) = login.captures(msg) {
        let success = c.name("outcome").is_some_and(|m| m.as_str() == "Accepted");
        p.text("outcome", if success { "success" } else { "failure" });
        p.text("auth_method", c.name("method").map_or("", |m| m.as_str()));
        if let Some(key) = c.name("key") {
            p.attr("ssh.key", key.as_str());
        }
        c
    } else if let Some(c) = invalid.captures(msg) {
        p.text("outcome", "failure");
        p.attr("ssh.invalid_user", "true");
        c
    } else if let Some(c) = too_many.captures(msg) {
        p.text("outcome", "failure");
        p.attr("ssh.max_attempts_exceeded", "true");
        c
    } else {
        return Outcome::NotMine;
    };
    if c.name("invalid").is_some() {
        p.attr("ssh.invalid_user", "true");
    }
    // The user as sent, spaces included; an empty name is still an attempt.
    if let Some(user) = c.name("user") {
        p.typed.push(("user", Value::Str(user.as_str().to_owned())));
    }
    p.text("src_ip", c.name("ip").map_or("", |m| m.as_str()));
    if let Some(port) = c.name("port") {
        match port.as_str().parse::<u16>() {
            Ok(n) => p.typed.push(("src_port", Value::UInt(u64::from(n)))),
            Err(_) => return Outcome::Failed("sshd: port out of range"),
        }
    }
    Outcome::Parsed(p)
}

/// Parses a sudo message (`<user> : … ; COMMAND=…`).
pub fn parse_sudo(msg: &str) -> Outcome {
    let msg = msg.trim();
    let Some((user, rest)) = msg.split_once(" : ") else {
        return Outcome::NotMine;
    };
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Outcome::NotMine;
    }
    // COMMAND= comes last and may itself contain " ; ".
    let (head, command) = match rest.find("COMMAND=") {
        Some(i) if i == 0 || rest[..i].ends_with(" ; ") => (&rest[..i], Some(&rest[i + 8..])),
        _ => (rest, None),
    };
    let mut p = Parsed::new(SourceKind::Auth);
    p.text("program", "sudo");
    p.typed.push(("user", Value::Str(user.to_owned())));
    let mut reason = None;
    let mut saw_tty = false;
    for part in head.split(" ; ").map(str::trim).filter(|s| !s.is_empty()) {
        match part.split_once('=') {
            Some(("TTY", v)) => {
                saw_tty = true;
                p.attr("sudo.tty", v);
            }
            Some(("PWD", v)) => p.attr("sudo.pwd", v),
            Some(("USER", v)) => p.text("target_user", v),
            Some(("GROUP", v)) => p.attr("sudo.group", v),
            Some(("ENV", v)) => p.attr("sudo.env", v),
            Some(("TSID", v)) => p.attr("sudo.tsid", v),
            _ if reason.is_none() && !saw_tty => reason = Some(part),
            _ => p.attr("sudo.extra", part),
        }
    }
    if !saw_tty && command.is_none() {
        return Outcome::NotMine;
    }
    if let Some(command) = command {
        p.text("command", command);
    }
    match reason {
        Some(r) => {
            p.text("outcome", "failure");
            p.attr("sudo.reason", r);
        }
        None => p.text("outcome", "success"),
    }
    Outcome::Parsed(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(o: Outcome) -> Parsed {
        match o {
            Outcome::Parsed(p) => p,
            other => panic!("not parsed: {other:?}"),
        }
    }

    fn get<'a>(p: &'a Parsed, column: &str) -> Option<&'a Value> {
        p.typed
            .iter()
            .find_map(|(c, v)| (*c == column).then_some(v))
    }

    fn s(v: &str) -> Option<Value> {
        Some(Value::Str(v.into()))
    }

    #[test]
    fn sshd_logins() {
        let p = parsed(parse_sshd(
            "sshd",
            "Accepted publickey for drift from 10.3.0.7 port 52144 ssh2: ED25519 SHA256:abc",
        ));
        assert_eq!(get(&p, "program").cloned(), s("sshd"));
        assert_eq!(get(&p, "outcome").cloned(), s("success"));
        assert_eq!(get(&p, "auth_method").cloned(), s("publickey"));
        assert_eq!(get(&p, "user").cloned(), s("drift"));
        assert_eq!(get(&p, "src_ip").cloned(), s("10.3.0.7"));
        assert_eq!(get(&p, "src_port"), Some(&Value::UInt(52144)));
        assert!(
            p.attrs
                .contains(&("ssh.key".into(), "ED25519 SHA256:abc".into()))
        );

        let p = parsed(parse_sshd(
            "sshd-session",
            "Failed password for invalid user admin from 2001:db8::9 port 4022 ssh2",
        ));
        assert_eq!(get(&p, "outcome").cloned(), s("failure"));
        assert_eq!(get(&p, "auth_method").cloned(), s("password"));
        assert_eq!(get(&p, "user").cloned(), s("admin"));
        assert!(
            p.attrs
                .contains(&("ssh.invalid_user".into(), "true".into()))
        );

        let p = parsed(parse_sshd(
            "sshd",
            "Failed keyboard-interactive/pam for root from 203.0.113.5 port 22 ssh2",
        ));
        assert_eq!(
            get(&p, "auth_method").cloned(),
            s("keyboard-interactive/pam")
        );

        let p = parsed(parse_sshd(
            "sshd",
            "Invalid user ola nordmann from 203.0.113.5 port 50022",
        ));
        assert_eq!(get(&p, "user").cloned(), s("ola nordmann"));
        assert_eq!(get(&p, "auth_method"), None);

        let p = parsed(parse_sshd(
            "sshd",
            "error: maximum authentication attempts exceeded for root from 203.0.113.5 port 50022 ssh2 [preauth]",
        ));
        assert_eq!(get(&p, "outcome").cloned(), s("failure"));

        assert_eq!(
            parse_sshd(
                "sshd",
                "Failed password for root from 203.0.113.5 port 99999 ssh2"
            ),
            Outcome::Failed("sshd: port out of range")
        );
        for other in [
            "Connection closed by 203.0.113.5 port 50022 [preauth]",
            "Server listening on 0.0.0.0 port 22.",
            "",
        ] {
            assert_eq!(parse_sshd("sshd", other), Outcome::NotMine, "{other}");
        }
    }

    #[test]
    fn sudo_lines() {
        let p = parsed(parse_sudo(
            "kari : TTY=pts/0 ; PWD=/home/kari ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        ));
        assert_eq!(get(&p, "program").cloned(), s("sudo"));
        assert_eq!(get(&p, "user").cloned(), s("kari"));
        assert_eq!(get(&p, "target_user").cloned(), s("root"));
        assert_eq!(
            get(&p, "command").cloned(),
            s("/usr/bin/systemctl restart nginx")
        );
        assert_eq!(get(&p, "outcome").cloned(), s("success"));
        assert!(p.attrs.contains(&("sudo.pwd".into(), "/home/kari".into())));

        let p = parsed(parse_sudo(
            "ola : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh -c a ; b",
        ));
        assert_eq!(get(&p, "outcome").cloned(), s("failure"));
        assert_eq!(get(&p, "command").cloned(), s("/bin/sh -c a ; b"));
        assert!(
            p.attrs
                .contains(&("sudo.reason".into(), "3 incorrect password attempts".into()))
        );

        let p = parsed(parse_sudo(
            "ola : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; GROUP=adm ; COMMAND=/bin/id",
        ));
        assert!(p.attrs.contains(&("sudo.group".into(), "adm".into())));
        for other in [
            "pam_unix(sudo:session): session opened for user root",
            "kari : something else entirely",
            " : TTY=x",
        ] {
            assert_eq!(parse_sudo(other), Outcome::NotMine, "{other}");
        }
    }
}
