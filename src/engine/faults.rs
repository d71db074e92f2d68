//! Server releases with faults that no grant can work around, named in the report so that an admin who granted
//! everything learns why a direction still does not work, and what fixes it.

/// What is wrong with `software` (an XEP-0092 "name version"), if it is a release with a known fault.
pub(super) fn known_fault(software: &str) -> Option<&'static str> {
    let version = software.strip_prefix("ejabberd ")?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    // ejabberd 24.10 implemented XEP-0356 0.4 (IQ permissions); until 25.03 its mod_privilege hands a component's
    // privileged IQ back to it unprocessed (fixed by ejabberd commit 64142de4f) and drops the component's unwrapped
    // IQs to bare JIDs, among them the answers to mod_delegation's disco#info checks (a4062f6ac).
    ((24, 10)..(25, 3)).contains(&(major, minor)).then_some(
        "its mod_privilege hands the component's privileged IQs back unprocessed and drops the component's \
         answers to mod_delegation (both fixed in ejabberd 25.03): no direction that needs the IQ privilege or a \
         delegation can work, whatever the config grants; upgrade ejabberd (Debian trixie-backports has 26.07)",
    )
}

#[cfg(test)]
mod tests {
    use super::known_fault;

    #[test]
    fn only_ejabberd_24_10_to_25_02_is_named() {
        for faulty in ["ejabberd 24.10", "ejabberd 24.12", "ejabberd 25.02", "ejabberd 24.12.1"] {
            assert!(known_fault(faulty).is_some(), "{faulty}");
        }
        for fine in
            ["ejabberd 23.01", "ejabberd 24.07", "ejabberd 25.03", "ejabberd 26.07", "Prosody 24.12", "ejabberd"]
        {
            assert!(known_fault(fine).is_none(), "{fine}");
        }
    }
}
