//! What a migration did to each account: one [`AccountReport`] per account, written as it happens by a
//! [`ReportWriter`] (JSON, never accumulated) and counted by a [`Summary`] (the human summary at the end).
//!
//! The JSON shape is shared by every migration (offline XEP-0227 and the live sweep) and read by tests and
//! operators' scripts, so its field names are fixed:
//!
//! ```json
//! {"accounts":[
//! {"account":"alice@localhost","outcome":"converted","source":"vcard","hash":"<sha1 of the PNG>","file":"a.xml"},
//! {"account":"bob@localhost","outcome":"skipped","why":"has-pep-avatar","reason":"<human text>"},
//! {"account":"carol@localhost","outcome":"refused","why":"bad-image","reason":"<human text>"}
//! ],
//! "summary":{"converted":1,"skipped":1,"refused":1}}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::avatar::AvatarHash;

/// One account's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReport {
    /// `user@host`.
    pub account: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a migration did with an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// XEP-0084 avatar nodes were added from `source`.
    Converted {
        /// Where the image came from.
        source: Source,
        /// SHA-1 of the PNG now published (the data item id and the metadata item id); `null` when a live sweep
        /// propagated the owner's "no avatar".
        #[serde(serialize_with = "hex", deserialize_with = "unhex")]
        hash: Option<AvatarHash>,
        /// Where the change was written: the file, relative to the export's root (offline), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// The schemes written (live sweep): `vcard`, `xep0084`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        wrote: Vec<String>,
    },
    /// Nothing to do, by design.
    Skipped {
        /// The reason's code.
        why: Why,
        /// The reason in words, with the details of this account.
        reason: String,
    },
    /// There was something to convert, but it was not done; the account is left exactly as it was.
    Refused {
        /// The reason's code.
        why: Why,
        /// The reason in words, with the details of this account.
        reason: String,
    },
}

/// The scheme an avatar was converted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// XEP-0054 vCard PHOTO (BINVAL).
    Vcard,
    /// XEP-0008 `storage:client:avatar` data.
    Xep0008,
    /// XEP-0084 PEP (a live sweep writing the vCard from it).
    Xep0084,
}

impl Source {
    /// Where the image was, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Vcard => "vCard PHOTO",
            Source::Xep0008 => "storage:client:avatar data",
            Source::Xep0084 => "XEP-0084 avatar",
        }
    }
}

/// Why an account was skipped or refused: a stable code for scripts, grouped in the human summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// Skipped: the metadata node's current item names a data item holding exactly those bytes.
    HasPepAvatar,
    /// Skipped: the metadata node's current item is empty (or `<stop/>`): the user chose "no avatar".
    PepNoAvatar,
    /// Skipped: the current metadata lists only images hosted at URLs, which are the user's avatar.
    PepUrlAvatar,
    /// Skipped: no vCard PHOTO and no XEP-0008 data.
    NoAvatar,
    /// Skipped: the vCard PHOTO is a URL (EXTVAL), which is never fetched.
    Extval,
    /// Refused: the image (or its base64) is not a usable avatar.
    BadImage,
    /// Refused: a `<user/>` without a `name`, so no account to write it to.
    NoName,
    /// Refused: part of the account is in an XInclude'd file, so its avatar nodes cannot be checked.
    IncludeInUser,
    /// Skipped (live): every scheme already holds the account's avatar.
    UpToDate,
    /// Refused (live): the server did not grant a right the sweep needs.
    NotGranted,
    /// Refused (live): a read or write failed, or what the server holds was refused (see the reason).
    Failed,
}

impl Why {
    /// Every code.
    pub const ALL: [Why; 11] = [
        Self::HasPepAvatar,
        Self::PepNoAvatar,
        Self::PepUrlAvatar,
        Self::NoAvatar,
        Self::Extval,
        Self::BadImage,
        Self::NoName,
        Self::IncludeInUser,
        Self::UpToDate,
        Self::NotGranted,
        Self::Failed,
    ];

    /// The code, as in the JSON.
    pub fn code(self) -> &'static str {
        match self {
            Self::HasPepAvatar => "has-pep-avatar",
            Self::PepNoAvatar => "pep-no-avatar",
            Self::PepUrlAvatar => "pep-url-avatar",
            Self::NoAvatar => "no-avatar",
            Self::Extval => "extval",
            Self::BadImage => "bad-image",
            Self::NoName => "no-name",
            Self::IncludeInUser => "include-in-user",
            Self::UpToDate => "up-to-date",
            Self::NotGranted => "not-granted",
            Self::Failed => "failed",
        }
    }

    /// What the code means, for the human summary.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::HasPepAvatar => "already has a usable XEP-0084 avatar",
            Self::PepNoAvatar => "disabled the XEP-0084 avatar (empty metadata)",
            Self::PepUrlAvatar => "XEP-0084 avatar hosted at a URL",
            Self::NoAvatar => "no vCard PHOTO and no XEP-0008 data",
            Self::Extval => "vCard PHOTO is a URL (EXTVAL), not fetched",
            Self::BadImage => "the image is not a usable avatar",
            Self::NoName => "<user/> without a name",
            Self::IncludeInUser => "account split across XInclude'd files",
            Self::UpToDate => "every scheme already holds the avatar",
            Self::NotGranted => "a right the sweep needs was not granted",
            Self::Failed => "a request failed or its answer was refused",
        }
    }
}

impl Serialize for Why {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// Read back from a live sweep's checkpoint.
impl<'de> Deserialize<'de> for Why {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Self::ALL
            .into_iter()
            .find(|w| w.code() == code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown why {code:?}")))
    }
}

fn hex<S: Serializer>(hash: &Option<AvatarHash>, s: S) -> Result<S::Ok, S::Error> {
    match hash {
        Some(hash) => s.collect_str(hash),
        None => s.serialize_none(),
    }
}

fn unhex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AvatarHash>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| AvatarHash::parse(&t).map_err(serde::de::Error::custom)).transpose()
}

/// Writes the JSON report record by record, so its size never sits in memory. Call [`ReportWriter::finish`] to
/// close the document; a report cut short by an error is left unterminated on purpose (it is not a full report).
pub struct ReportWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> ReportWriter<W> {
    /// Starts the document.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(b"{\"accounts\":[")?;
        Ok(Self { out, records: 0 })
    }

    /// Appends one account, on a line of its own.
    pub fn record(&mut self, report: &AccountReport) -> io::Result<()> {
        self.out.write_all(if self.records == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.out, report)?;
        self.records += 1;
        Ok(())
    }

    /// Closes the document with the counts and hands back the writer, flushed.
    pub fn finish(mut self, summary: &Summary) -> io::Result<W> {
        self.out.write_all(b"\n],\n\"summary\":")?;
        serde_json::to_writer(&mut self.out, &summary.counts)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The counts of a migration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Accounts converted.
    pub converted: u64,
    /// Accounts skipped.
    pub skipped: u64,
    /// Accounts refused.
    pub refused: u64,
}

/// Accounts listed per reason in the human summary; the rest are in the JSON report.
const EXAMPLES: usize = 3;

/// Counts per outcome, per source and per reason, with a few example accounts per reason. Its size depends on the
/// number of distinct reasons, never on the number of accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    counts: Counts,
    sources: BTreeMap<Source, u64>,
    /// (refused?, why) → (count, first accounts).
    reasons: BTreeMap<(bool, Why), (u64, Vec<String>)>,
}

impl Summary {
    /// Counts one account.
    pub fn add(&mut self, report: &AccountReport) {
        let (refused, why) = match &report.outcome {
            Outcome::Converted { source, .. } => {
                self.counts.converted += 1;
                *self.sources.entry(*source).or_default() += 1;
                return;
            }
            Outcome::Skipped { why, .. } => (false, *why),
            Outcome::Refused { why, .. } => (true, *why),
        };
        if refused {
            self.counts.refused += 1;
        } else {
            self.counts.skipped += 1;
        }
        let (count, examples) = self.reasons.entry((refused, why)).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(report.account.clone());
        }
    }

    /// The totals.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Accounts seen.
    pub fn accounts(&self) -> u64 {
        self.counts.converted + self.counts.skipped + self.counts.refused
    }
}

impl fmt::Display for Summary {
    /// Counts first, then skipped and refused accounts grouped by reason, with a few examples each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Counts { converted, skipped, refused } = self.counts;
        writeln!(f, "{} accounts: {converted} converted, {skipped} skipped, {refused} refused", self.accounts())?;
        for (source, count) in &self.sources {
            writeln!(f, "  converted from {}: {count}", source.describe())?;
        }
        for (heading, refused) in [("skipped", false), ("refused", true)] {
            let mut reasons = self.reasons.iter().filter(|((r, _), _)| *r == refused).peekable();
            if reasons.peek().is_some() {
                writeln!(f, "{heading}:")?;
            }
            for ((_, why), (count, examples)) in reasons {
                let more = if *count > examples.len() as u64 { ", …" } else { "" };
                writeln!(f, "  {count:>8}  {:<16} {} ({}{more})", why.code(), why.meaning(), examples.join(", "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(account: &str, why: Why) -> AccountReport {
        AccountReport { account: account.into(), outcome: Outcome::Skipped { why, reason: "r".into() } }
    }

    #[test]
    fn writes_one_record_per_line_and_the_counts() {
        let converted = AccountReport {
            account: "a@h".into(),
            outcome: Outcome::Converted {
                source: Source::Vcard,
                hash: Some(AvatarHash::of(b"abc")),
                file: None,
                wrote: vec![],
            },
        };
        let mut summary = Summary::default();
        let mut writer = ReportWriter::new(Vec::new()).unwrap();
        for report in [converted, skipped("b@h", Why::NoAvatar)] {
            writer.record(&report).unwrap();
            summary.add(&report);
        }
        let json = String::from_utf8(writer.finish(&summary).unwrap()).unwrap();
        assert_eq!(
            json,
            "{\"accounts\":[\n\
             {\"account\":\"a@h\",\"outcome\":\"converted\",\"source\":\"vcard\",\
             \"hash\":\"a9993e364706816aba3e25717850c26c9cd0d89d\"},\n\
             {\"account\":\"b@h\",\"outcome\":\"skipped\",\"why\":\"no-avatar\",\"reason\":\"r\"}\n],\n\
             \"summary\":{\"converted\":1,\"skipped\":1,\"refused\":0}}\n"
        );
    }

    #[test]
    fn an_empty_report_is_valid_json() {
        let json = ReportWriter::new(Vec::new()).unwrap().finish(&Summary::default()).unwrap();
        assert_eq!(json, b"{\"accounts\":[\n],\n\"summary\":{\"converted\":0,\"skipped\":0,\"refused\":0}}\n");
    }

    #[test]
    fn summary_groups_by_reason_with_a_few_examples() {
        let mut summary = Summary::default();
        for i in 0..5 {
            summary.add(&skipped(&format!("u{i}@h"), Why::NoAvatar));
        }
        let text = summary.to_string();
        assert!(text.starts_with("5 accounts: 0 converted, 5 skipped, 0 refused\nskipped:\n"), "{text}");
        assert!(text.contains("no-avatar") && text.contains("(u0@h, u1@h, u2@h, …)"), "{text}");
    }
}
