//! The list of accounts to sweep, as admins get it from their server.
//!
//! Prosody 0.12 offers no XEP-0133 "get registered users" command (mod_admin_adhoc lists online users only), so
//! the list comes from the server's own tool: `prosodyctl shell user list example.org` prints one JID per line
//! (plus an `OK: …` line), `ejabberdctl registered_users example.org` prints bare localparts. Both are read as is:
//! the first word of each line, qualified with `domain` when it has no `@`; lines that are not JIDs are counted,
//! not fatal.

use std::collections::HashSet;
use std::io::BufRead;

use xmpp_parsers::jid::{BareJid, Jid};

/// Reading the account list failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The list could not be read.
    #[error("reading the account list: {0}")]
    Io(#[from] std::io::Error),
}

/// The accounts read, in order and without repeats.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccountList {
    /// Accounts to sweep.
    pub accounts: Vec<BareJid>,
    /// Lines that named no account (tool chatter, typos), with their line number.
    pub ignored: Vec<(usize, String)>,
}

/// Reads one account per line; `#` starts a comment; bare localparts get `@domain` when a domain is given.
pub fn read(input: impl BufRead, domain: Option<&str>) -> Result<AccountList, AccountsError> {
    let mut list = AccountList::default();
    let mut seen = HashSet::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.split('#').next().unwrap_or_default().trim();
        let Some(word) = text.split_whitespace().next() else { continue };
        let qualified = match (word.contains('@'), domain) {
            (false, Some(domain)) => format!("{word}@{domain}"),
            _ => word.to_owned(),
        };
        match qualified.parse::<Jid>().map(|j| j.to_bare()) {
            Ok(jid) if jid.node().is_some() => {
                if seen.insert(jid.clone()) {
                    list.accounts.push(jid);
                }
            }
            _ => list.ignored.push((n + 1, line.clone())),
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jids(list: &AccountList) -> Vec<String> {
        list.accounts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn prosodyctl_output_is_read_and_its_status_line_ignored() {
        let text = "alice@example.org\nbob@example.org\nOK: Showing all 2 users\n";
        let list = read(text.as_bytes(), None).unwrap();
        assert_eq!(jids(&list), ["alice@example.org", "bob@example.org"]);
        assert_eq!(list.ignored, vec![(3, "OK: Showing all 2 users".to_owned())]);
    }

    #[test]
    fn ejabberdctl_localparts_are_qualified_with_the_domain() {
        let list = read("alice\nbob\n".as_bytes(), Some("example.org")).unwrap();
        assert_eq!(jids(&list), ["alice@example.org", "bob@example.org"]);
    }

    #[test]
    fn comments_blanks_and_repeats_are_skipped_and_full_jids_lose_their_resource() {
        let text = "# accounts\n\n  alice@example.org  # the first\nAlice@Example.org\ncarol@example.org/phone\n";
        let list = read(text.as_bytes(), None).unwrap();
        assert_eq!(jids(&list), ["alice@example.org", "carol@example.org"]);
        assert!(list.ignored.is_empty());
    }

    #[test]
    fn a_domain_alone_is_not_an_account() {
        let list = read("example.org\n".as_bytes(), None).unwrap();
        assert!(list.accounts.is_empty());
        assert_eq!(list.ignored.len(), 1);
    }
}
