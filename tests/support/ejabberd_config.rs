//! The private ejabberd configuration: `ejabberd.yml` and the `ejabberdctl.cfg` that names the node (see
//! shared/reference/test-servers.md and specs.md §9 for where each line comes from).

use super::ejabberd::{COMPONENT, DOMAIN, Mode, Version};

/// Everything that differs between two test servers. Paths are as the server sees them (inside the
/// `E2E_SERVER_ROOT` when one is set).
pub struct ConfigParams<'a> {
    /// The instance's directory (config, spool, logs, pidfile).
    pub dir: &'a str,
    pub c2s_port: u16,
    pub component_port: u16,
    /// The Erlang distribution port: the node listens there and `ejabberdctl` reaches it there, so no epmd runs.
    pub dist_port: u16,
    /// `ejabberd-e2e-<dist_port>@localhost`: unique, so parallel tests never talk to each other's node.
    pub node: &'a str,
    pub cookie: &'a str,
    pub secret: &'a str,
    pub mode: Mode,
    pub version: Version,
}

/// `ejabberdctl.cfg`, sourced by the `ejabberdctl` shell script for every command (start, stop, register, …).
///
/// `-kernel inet_dist_use_interface` is given directly rather than as `INET_DIST_INTERFACE`, which would make the
/// script start one more Erlang VM per command just to parse the address.
pub fn ctl_config(p: &ConfigParams<'_>) -> String {
    format!(
        r#"# Written by tests/support/ejabberd_config.rs for one test; deleted with its temp dir.
ERLANG_NODE={node}
ERL_DIST_PORT={dist}
ERL_OPTIONS="-setcookie {cookie} -kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH={dir}/ejabberd.pid
EJABBERD_CONFIG_PATH={dir}/ejabberd.yml
EJABBERD_BYPASS_WARNINGS=true
"#,
        node = p.node,
        dist = p.dist_port,
        cookie = p.cookie,
        dir = p.dir,
    )
}

/// `ejabberd.yml`: one host, plaintext c2s on loopback (no certificate, so no STARTTLS: slixmpp logs in with SCRAM
/// over plain TCP, as against the test Prosody), the component listener, and the modules the gateway relies on.
pub fn render(p: &ConfigParams<'_>) -> String {
    // mod_avatar converts vCard <-> XEP-0084 (XEP-0398) and needs mod_vcard_xupdate for the presence hashes.
    let converting = match p.mode {
        Mode::VcardLegacy => "  mod_avatar: {}\n  mod_vcard_xupdate: {}\n",
        Mode::PlainVcard => "",
    };
    // ejabberd 23.01 (urn:xmpp:privilege:1) knows no IQ permission and refuses an unknown `iq` option at start-up;
    // 24.10 added it (urn:xmpp:privilege:2). The same grants as the test Prosody's privileged_entities.
    let iq = if p.version.has_iq_privilege() {
        concat!(
            "    iq:\n",
            "      \"http://jabber.org/protocol/pubsub\": {both: gateway}\n",
            "      \"http://jabber.org/protocol/pubsub#owner\": {both: gateway}\n",
            "      \"vcard-temp\": {both: gateway}\n",
            "      \"http://jabber.org/protocol/disco#info\": {get: gateway}\n",
        )
    } else {
        ""
    };
    format!(
        r#"# Written by tests/support/ejabberd_config.rs for one test (ejabberd {version}); deleted with its temp dir.
hosts:
  - {DOMAIN}
loglevel: debug
log_rotate_count: 0
hide_sensitive_log_data: false
# No certificate: ejabberd offers no STARTTLS, and PLAIN/SCRAM work over the loopback TCP connection.
certfiles: []
auth_method: internal
auth_password_format: scram
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
# No s2s: a stanza for an unknown domain bounces at once instead of waiting for DNS.
s2s_access: none
listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    starttls_required: false
    max_stanza_size: 262144
  -
    port: {component}
    ip: "127.0.0.1"
    module: ejabberd_service
    max_stanza_size: 524288
    hosts:
      "{COMPONENT}":
        password: "{secret}"
acl:
  gateway:
    server: "{COMPONENT}"
access_rules:
  gateway:
    allow: gateway
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
modules:
  mod_admin_extra: {{}}
  mod_caps: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster:
    versioning: false
  mod_version:
    show_os: false
  mod_vcard:
    search: false
  # PEP is mod_pubsub's "pep" plugin, as in ejabberd's default config.
  mod_pubsub:
    plugins:
      - flat
      - pep
{converting}  # XEP-0356: per permission an access rule that allows the component (specs.md §9).
  mod_privilege:
    roster:
      both: gateway
    message:
      outgoing: gateway
    presence:
      roster: gateway
{iq}  # XEP-0355: `access` defaults to none, which denies the delegation.
  mod_delegation:
    namespaces:
      "storage:client:avatar":
        access: gateway
      "jabber:iq:avatar":
        access: gateway
"#,
        version = p.version,
        c2s = p.c2s_port,
        component = p.component_port,
        secret = p.secret,
    )
}
