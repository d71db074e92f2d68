//! The private Prosody configuration (see shared/reference/test-servers.md for where each line comes from).

use std::path::Path;

use super::prosody::{COMPONENT, DOMAIN, Mode};

/// Everything that differs between two test servers.
pub struct ConfigParams<'a> {
    pub dir: &'a Path,
    pub c2s_port: u16,
    pub component_port: u16,
    pub secret: &'a str,
    pub mode: Mode,
}

/// The Lua config text. Paths are absolute so prosodyctl and prosody agree whatever their working directory.
pub fn render(p: &ConfigParams<'_>) -> String {
    let dir = p.dir.display();
    // Loading vcard and vcard_legacy together silently drops mod_vcard, so exactly one of them.
    let vcard = match p.mode {
        Mode::VcardLegacy => "vcard_legacy",
        Mode::PlainVcard => "vcard",
    };
    format!(
        r#"-- Written by tests/support/prosody_config.rs for one test; deleted with its temp dir.
run_as_root = true -- CI runs as root and Prosody refuses to otherwise
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs" -- an empty dir: no TLS, but prosodyctl complains when it is missing
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
component_ports = {{ {comp} }}
component_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "private"; "ping"; "posix"; "pep"; "{vcard}"; "groups"; }}
modules_disabled = {{ "s2s"; "tls"; }}
-- Every listed user is a mutual contact of every other one (PEP's default access model is "presence").
groups_file = "{dir}/groups.txt"

VirtualHost "{DOMAIN}"
  modules_enabled = {{ "privilege"; "delegation"; }}
  privileged_entities = {{
    ["{COMPONENT}"] = {{
      roster = "both"; message = "outgoing"; presence = "roster";
      iq = {{
        ["http://jabber.org/protocol/pubsub"] = "both";
        ["http://jabber.org/protocol/pubsub#owner"] = "both";
        ["vcard-temp"] = "both";
        ["http://jabber.org/protocol/disco#info"] = "get";
      }};
    }};
  }}
  delegations = {{
    ["storage:client:avatar"] = {{ jid = "{COMPONENT}" }};
    ["jabber:iq:avatar"] = {{ jid = "{COMPONENT}" }};
  }}

Component "{COMPONENT}"
  component_secret = "{secret}"
  modules_enabled = {{ "privilege"; "delegation"; }}
"#,
        c2s = p.c2s_port,
        comp = p.component_port,
        secret = p.secret,
    )
}

/// mod_groups' file: one private group holding every user, so each sees all the others with subscription "both".
pub fn groups_file(users: &[&str]) -> String {
    let mut text = String::from("[harness]\n");
    for user in users {
        text.push_str(&format!("{user}@{DOMAIN}\n"));
    }
    text
}
