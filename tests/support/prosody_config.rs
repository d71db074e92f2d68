//! The private Prosody configuration (see shared/reference/test-servers.md for where each line comes from).

use std::path::Path;

use super::prosody::{COMPONENT, DOMAIN, Flavor, Mode};

/// Everything that differs between two test servers.
pub struct ConfigParams<'a> {
    pub dir: &'a Path,
    pub c2s_port: u16,
    pub component_port: u16,
    pub secret: &'a str,
    pub mode: Mode,
    /// The Prosody generation the text is for.
    pub flavor: Flavor,
}

/// The Lua config text. Paths are absolute so prosodyctl and prosody agree whatever their working directory.
pub fn render(p: &ConfigParams<'_>) -> String {
    let dir = p.dir.display();
    // Loading vcard and vcard_legacy together silently drops mod_vcard, so exactly one of them.
    let vcard = match p.mode {
        Mode::VcardLegacy => "vcard_legacy",
        Mode::PlainVcard => "vcard",
    };
    // What Prosody 13.0 deprecated (`prosodyctl check config` on 13.0.6 names both): mod_posix, whose pidfile and
    // signal handling are in the core now, and `legacy_ssl_ports`, an alias of `c2s_direct_tls_ports`. 0.12 needs
    // mod_posix for the pidfile, so the 0.12 text stays as it was. Everything else (run_as_root, internal_hashed,
    // mod_groups with groups_file, privileged_entities, delegations) reads the same on 13.0.6 with prosody-modules
    // hg20260723: its log has no warning or error for this config.
    let (posix, legacy_ssl) = match p.flavor {
        Flavor::Prosody012 => (r#" "posix";"#, "\nlegacy_ssl_ports = { }"),
        Flavor::Prosody13 => ("", ""),
    };
    // The shipped module, loaded from the repository as an admin would from a copy (README): every test's presence
    // goes through it, so no other test may depend on presence without the XEP-0008 stamp.
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prosody");
    format!(
        r#"-- Written by tests/support/prosody_config.rs for one test ({flavor}); deleted with its temp dir.
run_as_root = true -- CI runs as root and Prosody refuses to otherwise
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs" -- an empty dir: no TLS, but prosodyctl complains when it is missing
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
component_ports = {{ {comp} }}
component_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}{legacy_ssl}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "private"; "ping"; "version";{posix} "pep"; "{vcard}"; "groups"; }}
modules_disabled = {{ "s2s"; "tls"; }}
-- Every listed user is a mutual contact of every other one (PEP's default access model is "presence").
groups_file = "{dir}/groups.txt"
plugin_paths = {{ "{contrib}" }}

VirtualHost "{DOMAIN}"
  modules_enabled = {{ "privilege"; "delegation"; "avatar_gateway"; }}
  avatar_gateway_component = "{COMPONENT}"
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
        flavor = p.flavor.name(),
        contrib = contrib.display(),
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
