//! `avatar-gateway migrate xep0227`: the offline migration of XEP-0227 exports (issue 4).
//!
//! - Golden files, exact bytes: hand-written exports in `fixtures/xep0227/` (one file with several hosts and one
//!   user per outcome, the PEP wrapper cases, the old namespace, Prosody's file per user, XInclude) rewritten into
//!   `fixtures/golden/xep0227/`. `UPDATE_GOLDEN=1 cargo test --test migrate_xep0227` rewrites the golden files
//!   (then review the diff).
//! - Real exports (`fixtures/xep0227/prosody-migrator/`, `fixtures/xep0227/ejabberd/`, captured by another test):
//!   each output is its input with exactly the expected avatar nodes before `</user>`, built here with the same
//!   XEP-0084 builders the live gateway publishes with.
//! - The rules: never overwrite, dry run writes nothing, unsafe includes and malformed XML stop with the file and
//!   the byte offset, the report is valid JSON with fixed field names, a second run changes nothing.
//! - Properties: exports with nothing to add come out byte for byte; arbitrary bytes never panic.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use avatar_gateway::image::{ImageLimits, Rendition};
use avatar_gateway::migrate::report::{AccountReport, Outcome, Source, Why};
use avatar_gateway::migrate::xep0227::{self, Converter, Document, Error, Hooks, Include, IncludeProblem, Options};
use avatar_gateway::wire::xep0084::{AccessModel, AvatarNode, data_item, metadata_item, node_config};
use avatar_gateway::wire::{b64, ns, xml};
use common::fixtures_dir;
use proptest::prelude::*;
use serde_json::Value;
use tempfile::TempDir;
use xmpp_parsers::minidom::Element;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn input(rel: &str) -> PathBuf {
    fixtures_dir().join("xep0227").join(rel)
}

fn options(input: PathBuf, output: Option<PathBuf>, report: Option<PathBuf>) -> Options {
    Options { input, output, report, access_model: AccessModel::Open, limits: ImageLimits::default(), progress: false }
}

/// Migrates `rel` (a fixture file or directory) into a temporary directory; returns it, the output path and the
/// parsed JSON report.
fn migrate_fixture(rel: &str, out_name: &str) -> (TempDir, PathBuf, Value) {
    let dir = TempDir::new().unwrap();
    let (out, report) = (dir.path().join(out_name), dir.path().join("report.json"));
    xep0227::run(&options(input(rel), Some(out.clone()), Some(report.clone()))).unwrap();
    let report = serde_json::from_slice(&fs::read(report).unwrap()).expect("the report is JSON");
    (dir, out, report)
}

/// Asserts that `actual` holds exactly the bytes of `fixtures/golden/xep0227/<rel>` (or writes them, with
/// `UPDATE_GOLDEN` set).
fn assert_golden_bytes(actual: &Path, rel: &str) {
    let golden = fixtures_dir().join("golden/xep0227").join(rel);
    let actual = fs::read(actual).unwrap_or_else(|e| panic!("{}: {e}", actual.display()));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(golden.parent().unwrap()).unwrap();
        fs::write(&golden, &actual).unwrap();
    }
    let expected = fs::read(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert!(
        actual == expected,
        "{rel} differs from its golden file\n  actual: {}\nexpected: {}",
        String::from_utf8_lossy(&actual),
        String::from_utf8_lossy(&expected)
    );
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `(account, outcome, why or source)` of each report record.
fn outcomes(report: &Value) -> Vec<(String, String, String)> {
    report["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            let detail = a.get("why").or_else(|| a.get("source")).and_then(Value::as_str).unwrap_or_default();
            (a["account"].as_str().unwrap().to_owned(), a["outcome"].as_str().unwrap().to_owned(), detail.to_owned())
        })
        .collect()
}

fn row(account: &str, outcome: &str, detail: &str) -> (String, String, String) {
    (account.to_owned(), outcome.to_owned(), detail.to_owned())
}

/// The core with no file system: includes are refused, reports collected.
struct Collect {
    converter: Converter,
    reports: Vec<AccountReport>,
}

impl Hooks for Collect {
    fn converter(&mut self) -> &mut Converter {
        &mut self.converter
    }

    fn include(&mut self, include: &Include<'_>) -> Result<(), Error> {
        Err(Error::Include {
            file: include.file.to_owned(),
            offset: include.offset,
            href: include.href.to_owned(),
            problem: IncludeProblem::NotRelative,
        })
    }

    fn account(&mut self, report: AccountReport) -> Result<(), Error> {
        self.reports.push(report);
        Ok(())
    }
}

/// Rewrites `bytes` in memory.
fn rewrite(bytes: &[u8], access: AccessModel) -> Result<(Vec<u8>, Vec<AccountReport>), Error> {
    let mut hooks = Collect { converter: Converter::new(access, ImageLimits::default()), reports: Vec::new() };
    let mut out = Vec::new();
    xep0227::rewrite(bytes, &mut out, Document { file: "test.xml", host: None }, &mut hooks)?;
    Ok((out, hooks.reports))
}

/// What the migration adds before `</user>` to a user with no PEP at all, for `photo` (the original image).
fn added_nodes(photo: &[u8]) -> (String, String) {
    let limits = ImageLimits::default();
    let png = Rendition::from_bytes(photo.to_vec(), &limits).unwrap().to_png(&limits).unwrap();
    let wrapper =
        |ns: &str, children: Vec<Element>| xml::to_string(&Element::builder("pubsub", ns).append_all(children).build());
    let items = |node: AvatarNode, item: Element| {
        Element::builder("items", ns::PUBSUB).attr("node".try_into().unwrap(), node.name()).append(item).build()
    };
    let owner = wrapper(
        ns::PUBSUB_OWNER,
        vec![
            node_config(AvatarNode::DATA, AccessModel::Open, None),
            node_config(AvatarNode::METADATA, AccessModel::Open, None),
        ],
    );
    let pubsub = wrapper(
        ns::PUBSUB,
        vec![items(AvatarNode::DATA, data_item(&png)), items(AvatarNode::METADATA, metadata_item(&png, &[]))],
    );
    (owner + &pubsub, png.hash().to_string())
}

/// The base64 text of the first `<open>…</close>` in `text`, decoded.
fn decoded_between(text: &str, open: &str, close: &str) -> Vec<u8> {
    let start = text.find(open).expect(open) + open.len();
    let end = start + text[start..].find(close).expect(close);
    b64::decode(&text[start..end]).unwrap()
}

/// `input` with `insertion` before the `</user>` that closes the user named `name`.
fn with_insertion_in_user(input: &str, name: &str, insertion: &str) -> String {
    let user = input.find(&format!("<user name='{name}'")).expect(name);
    let end = user + input[user..].find("</user>").unwrap();
    format!("{}{insertion}{}", &input[..end], &input[end..])
}

/// What `output` adds to `input`, checking that it adds and never changes: `input` is `output` with these pieces
/// taken out, and each piece is a run of whole elements.
fn insertions(input: &str, output: &str) -> Vec<String> {
    let (input, output) = (input.as_bytes(), output.as_bytes());
    let (mut i, mut j, mut pieces) = (0, 0, Vec::new());
    while i < input.len() {
        if output.get(j) == Some(&input[i]) {
            (i, j) = (i + 1, j + 1);
            continue;
        }
        // A piece starts with '<', which matched the '<' of what follows it in the input: step back over it.
        if j > 0 && output[j - 1] == b'<' {
            (i, j) = (i - 1, j - 1);
        }
        let anchor = &input[i..input.len().min(i + 80)];
        let k = output[j..].windows(anchor.len()).position(|w| w == anchor).expect("the input continues after a piece");
        pieces.push(String::from_utf8(output[j..j + k].to_vec()).unwrap());
        j += k;
    }
    if j < output.len() {
        pieces.push(String::from_utf8(output[j..].to_vec()).unwrap());
    }
    for piece in &pieces {
        let wrapped = format!("<piece xmlns='urn:test'>{piece}</piece>");
        assert!(wrapped.parse::<Element>().is_ok(), "not whole elements: {piece}");
    }
    pieces
}

/// What Prosody's importer reads of a user's avatar: its first pubsub#owner wrapper must configure both nodes, and
/// in its first pubsub wrapper the last metadata item must name a data item holding the bytes with that SHA-1.
fn assert_imported_avatar(user: &Element, hash: &str) {
    let owner = user.get_child("pubsub", ns::PUBSUB_OWNER).expect("an owner wrapper");
    for node in [ns::AVATAR_DATA, ns::AVATAR_METADATA] {
        assert!(
            owner.children().any(|c| c.is("configure", ns::PUBSUB_OWNER) && c.attr("node") == Some(node)),
            "{node}"
        );
    }
    let pubsub = user.get_child("pubsub", ns::PUBSUB).expect("a pubsub wrapper");
    let items = |node: &str| {
        pubsub.children().find(|c| c.is("items", ns::PUBSUB) && c.attr("node") == Some(node)).expect(node).clone()
    };
    let metadata = items(ns::AVATAR_METADATA);
    let current = metadata.children().last().expect("a metadata item");
    let info =
        current.get_child("metadata", ns::AVATAR_METADATA).and_then(|m| m.get_child("info", ns::AVATAR_METADATA));
    assert_eq!(info.and_then(|i| i.attr("id")), Some(hash));
    let data = items(ns::AVATAR_DATA);
    let item = data.children().find(|i| i.attr("id") == Some(hash)).expect("the data item");
    let bytes = b64::decode(&item.get_child("data", ns::AVATAR_DATA).unwrap().text()).unwrap();
    assert_eq!(avatar_gateway::avatar::AvatarHash::of(&bytes).to_string(), hash);
}

/// The `<user/>` named `name` in a parsed export.
fn user<'a>(export: &'a Element, name: &str) -> &'a Element {
    export
        .children()
        .flat_map(|host| host.children())
        .find(|u| u.name() == "user" && u.attr("name") == Some(name))
        .expect(name)
}

// ---------------------------------------------------------------------------------------------------------------
// Golden files

#[test]
fn several_hosts_in_one_file() {
    let (_dir, out, report) = migrate_fixture("hosts.xml", "hosts.xml");
    assert_golden_bytes(&out, "hosts.xml");
    assert_eq!(
        outcomes(&report),
        [
            row("alice@example.org", "converted", "vcard"),
            row("bob@example.org", "converted", "vcard"),
            row("carol@example.org", "converted", "xep0008"),
            row("dave@example.org", "converted", "xep0008"),
            row("erin@example.org", "skipped", "has-pep-avatar"),
            row("frank@example.org", "skipped", "pep-no-avatar"),
            row("grace@example.net", "refused", "bad-image"),
            row("heidi@example.net", "refused", "bad-image"),
            row("ivan@example.net", "skipped", "no-avatar"),
            row("judy@example.net", "skipped", "extval"),
            row("ken@example.net", "skipped", "no-avatar"),
        ]
    );
    assert_eq!(report["summary"], serde_json::json!({"converted": 4, "skipped": 5, "refused": 2}));
    let alice = &report["accounts"][0];
    // A PNG within the PEP budgets is published as is: the hash is the vCard photo's own (README of fixtures/images).
    assert_eq!(alice["hash"], "240049f4144bf19c0895e0f6be88a2297c660911");
    assert_eq!(alice["file"], "hosts.xml");
    // The JPEG became a PNG rendition, and the same image met again (dave) was not transcoded differently.
    assert_eq!(report["accounts"][1]["hash"], report["accounts"][3]["hash"]);
    assert!(report["accounts"][6]["reason"].as_str().unwrap().contains("not a PNG, JPEG, GIF or WebP"));
}

#[test]
fn refused_and_skipped_users_are_copied_unchanged() {
    let original = fs::read_to_string(input("hosts.xml")).unwrap();
    let (_dir, out, _) = migrate_fixture("hosts.xml", "hosts.xml");
    let migrated = fs::read_to_string(out).unwrap();
    // Everything from grace on (host example.net) has nothing to add.
    let from = original.find("<host jid='example.net'>").unwrap();
    assert!(migrated.ends_with(&original[from..]));
    for user in ["erin", "frank"] {
        let start = original.find(&format!("<user name='{user}'>")).unwrap();
        let end = start + original[start..].find("</user>").unwrap();
        assert!(migrated.contains(&original[start..end + 7]), "{user} changed");
    }
}

#[test]
fn avatar_nodes_go_into_the_first_wrappers() {
    let (_dir, out, report) = migrate_fixture("wrappers.xml", "wrappers.xml");
    assert_golden_bytes(&out, "wrappers.xml");
    assert_eq!(
        outcomes(&report),
        [
            row("olivia@localhost", "converted", "vcard"),
            row("peggy@localhost", "converted", "vcard"),
            row("trent@localhost", "converted", "vcard"),
            row("victor@localhost", "skipped", "pep-url-avatar"),
            row("walter@localhost", "converted", "vcard"),
        ]
    );
    let migrated = fs::read_to_string(out).unwrap();
    let olivia =
        &migrated[migrated.find("<user name='olivia'>").unwrap()..migrated.find("<user name='peggy'>").unwrap()];
    // The self-closing first owner wrapper was opened for the configurations; the second stays as it was.
    assert!(olivia.contains("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure xmlns="));
    assert!(olivia.contains(
        "</pubsub><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:microblog:0'>"
    ));
    // The items went into the first pubsub wrapper; the second one (Prosody never reads it) is untouched.
    assert!(olivia.ends_with(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'/></pubsub></user>\n"
    ));
    let peggy = &migrated[migrated.find("<user name='peggy'>").unwrap()..migrated.find("<user name='trent'>").unwrap()];
    // A node already configured keeps its configuration (presence); only the metadata node gets one, in the
    // prefixed wrapper; the item goes into the existing (self-closing) <items/>.
    assert_eq!(peggy.matches("<configure xmlns=").count(), 1);
    assert!(peggy.contains("node='urn:xmpp:avatar:metadata'><x xmlns='jabber:x:data' type='submit'>"));
    assert!(peggy.contains("</configure></o:pubsub>"));
    assert!(
        peggy.contains("<items node='urn:xmpp:avatar:metadata'><item xmlns='http://jabber.org/protocol/pubsub' id=")
    );
    // Trent's metadata already names the image: only the missing data item is added.
    let trent =
        &migrated[migrated.find("<user name='trent'>").unwrap()..migrated.find("<user name='victor'>").unwrap()];
    assert_eq!((trent.matches("<item ").count(), trent.matches("<configure ").count()), (2, 2));
}

#[test]
fn old_namespace_is_accepted() {
    let (_dir, out, report) = migrate_fixture("old-namespace.xml", "old-namespace.xml");
    assert_golden_bytes(&out, "old-namespace.xml");
    assert_eq!(outcomes(&report), [row("juliet@localhost", "converted", "vcard")]);
}

#[test]
fn prosody_file_per_user_directory() {
    let (_dir, out, report) = migrate_fixture("prosody-layout", "out");
    assert_eq!(files(&out), ["alice@example.org.xml", "bob@example.org.xml", "notes.txt"]);
    for name in files(&out) {
        assert_golden_bytes(&out.join(&name), &format!("prosody-layout/{name}"));
    }
    assert_eq!(
        outcomes(&report),
        [row("alice@example.org", "converted", "vcard"), row("bob@example.org", "skipped", "no-avatar")]
    );
    assert_eq!(report["accounts"][0]["file"], "alice@example.org.xml");
}

#[test]
fn xinclude_layout_is_followed_and_mirrored() {
    let (dir, out, report) = migrate_fixture("xinclude/main.xml", "out/main.xml");
    let out_dir = out.parent().unwrap();
    assert_eq!(files(out_dir), ["example.org.xml", "example.org/alice.xml", "example.org/bob.xml", "main.xml"]);
    for name in files(out_dir) {
        assert_golden_bytes(&out_dir.join(&name), &format!("xinclude/{name}"));
    }
    // The host is carried down into the included <user/> documents.
    assert_eq!(
        outcomes(&report),
        [row("alice@example.org", "converted", "vcard"), row("bob@example.org", "skipped", "no-avatar")]
    );
    assert_eq!(report["accounts"][0]["file"], "example.org/alice.xml");
    drop(dir);
}

// ---------------------------------------------------------------------------------------------------------------
// Real exports

#[test]
fn real_prosody_migrator_export() {
    let dir = fixtures_dir().join("xep0227/prosody-migrator");
    let (_tmp, out, report) = migrate_fixture("prosody-migrator", "out");
    assert_eq!(files(&out), files(&dir));
    assert_eq!(fs::read(out.join("carol@localhost.xml")).unwrap(), fs::read(dir.join("carol@localhost.xml")).unwrap());
    assert_eq!(fs::read(out.join("README.md")).unwrap(), fs::read(dir.join("README.md")).unwrap());
    // 8×8 PNGs are published as they are: the hashes of the README.
    for (user_name, hash) in
        [("alice", "29ea06db7cd44ee934e462bd0105efddebcd40ae"), ("bob", "148a3617725fcff638303dbeafd4ccd9efc57d18")]
    {
        let name = format!("{user_name}@localhost.xml");
        let (original, migrated) =
            (fs::read_to_string(dir.join(&name)).unwrap(), fs::read_to_string(out.join(&name)).unwrap());
        let pieces = insertions(&original, &migrated);
        assert!(!pieces.is_empty() && pieces.iter().all(|p| p.contains("urn:xmpp:avatar:")), "{pieces:?}");
        assert_imported_avatar(user(&migrated.parse().unwrap(), user_name), hash);
    }
    assert_eq!(
        outcomes(&report),
        [
            row("alice@localhost", "converted", "vcard"),
            row("bob@localhost", "converted", "xep0008"),
            row("carol@localhost", "skipped", "has-pep-avatar"),
        ]
    );
    assert_eq!(report["accounts"][0]["hash"], "29ea06db7cd44ee934e462bd0105efddebcd40ae");
    assert_eq!(report["accounts"][1]["hash"], "148a3617725fcff638303dbeafd4ccd9efc57d18");
}

#[test]
fn real_ejabberd_export() {
    let dir = fixtures_dir().join("xep0227/ejabberd");
    let main = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".xml") && !n.contains('_'))
        .expect("the main file");
    let host = main.replace(".xml", "_localhost.xml");
    let (_tmp, out, report) = migrate_fixture(&format!("ejabberd/{main}"), &format!("out/{main}"));
    assert_eq!(fs::read(&out).unwrap(), fs::read(dir.join(&main)).unwrap());
    let original = fs::read_to_string(dir.join(&host)).unwrap();
    let mut expected = original.clone();
    let mut hashes = Vec::new();
    for user in ["alice", "bob"] {
        let at = original.find(&format!("<user name='{user}'")).unwrap();
        let (added, hash) = added_nodes(&decoded_between(&original[at..], "<BINVAL>", "</BINVAL>"));
        expected = with_insertion_in_user(&expected, user, &added);
        hashes.push(hash);
    }
    let migrated = fs::read_to_string(out.parent().unwrap().join(&host)).unwrap();
    assert_eq!(migrated, expected);
    let parsed: Element = migrated.parse().unwrap();
    for (name, hash) in ["alice", "bob"].into_iter().zip(&hashes) {
        assert_imported_avatar(parsed.children().find(|u| u.attr("name") == Some(name)).unwrap(), hash);
    }
    assert_eq!(
        outcomes(&report),
        [
            row("alice@localhost", "converted", "vcard"),
            row("bob@localhost", "converted", "vcard"),
            row("carol@localhost", "skipped", "no-avatar"),
        ]
    );
    // alice's 96×96 PNG is kept (README hash); bob's JPEG is published as its PNG rendition.
    assert_eq!(hashes[0], "240049f4144bf19c0895e0f6be88a2297c660911");
    assert_eq!([&report["accounts"][0]["hash"], &report["accounts"][1]["hash"]], [&hashes[0], &hashes[1]]);
    assert_ne!(hashes[1], "e1db2cb9440bbb8fa051721fea0fa99786ff3d87");
}

// ---------------------------------------------------------------------------------------------------------------
// Rules

#[test]
fn a_second_run_changes_nothing() {
    for fixture in ["hosts.xml", "wrappers.xml", "old-namespace.xml"] {
        let (_dir, out, _) = migrate_fixture(fixture, fixture);
        let once = fs::read(&out).unwrap();
        let (twice, reports) = rewrite(&once, AccessModel::Open).unwrap();
        assert!(once == twice, "{fixture}: the second run changed the export");
        assert!(reports.iter().all(|r| !matches!(r.outcome, Outcome::Converted { .. })), "{fixture}: {reports:?}");
        // What was converted is now seen as a usable XEP-0084 avatar.
        let usable = reports.iter().filter(|r| matches!(r.outcome, Outcome::Skipped { why: Why::HasPepAvatar, .. }));
        assert!(usable.count() >= 1, "{fixture}");
    }
}

#[test]
fn access_model_is_the_one_asked_for() {
    let export = fs::read(input("wrappers.xml")).unwrap();
    let (out, _) = rewrite(&export, AccessModel::Presence).unwrap();
    let out = String::from_utf8(out).unwrap();
    // Added: both nodes for olivia and walter, the metadata node for peggy (whose data node keeps its form).
    assert_eq!(out.matches("<field var='pubsub#access_model'><value>presence</value>").count(), 5);
    assert!(!out.contains("<value>open</value>"));
}

#[test]
fn dry_run_writes_nothing_and_reports_the_same() {
    for fixture in ["hosts.xml", "xinclude/main.xml", "prosody-layout"] {
        let dir = TempDir::new().unwrap();
        let report = dir.path().join("dry.json");
        let summary = xep0227::run(&options(input(fixture), None, Some(report.clone()))).unwrap();
        assert_eq!(files(dir.path()), ["dry.json"], "{fixture}");
        let dry: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
        let (_tmp, _, real) = migrate_fixture(fixture, "out");
        assert_eq!(dry, real, "{fixture}");
        assert_eq!(summary.counts().converted, dry["summary"]["converted"].as_u64().unwrap());
    }
}

#[test]
fn report_records_have_the_fixed_fields() {
    let (_dir, _, report) = migrate_fixture("hosts.xml", "out.xml");
    fn keys(a: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        keys
    }
    for account in report["accounts"].as_array().unwrap() {
        match account["outcome"].as_str().unwrap() {
            "converted" => assert_eq!(keys(account), ["account", "file", "hash", "outcome", "source"]),
            "skipped" | "refused" => assert_eq!(keys(account), ["account", "outcome", "reason", "why"]),
            other => panic!("outcome {other}"),
        }
    }
    assert_eq!(keys(&report), ["accounts", "summary"]);
    assert_eq!(keys(&report["summary"]), ["converted", "refused", "skipped"]);
}

#[test]
fn never_overwrites() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("taken.xml");
    fs::write(&out, "mine").unwrap();
    let err = xep0227::run(&options(input("hosts.xml"), Some(out.clone()), None)).unwrap_err();
    assert!(matches!(&err, Error::Exists(path) if *path == out), "{err}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "mine");
    // A directory export into a directory inside the input is refused too.
    let err = xep0227::run(&options(input("prosody-layout"), Some(input("prosody-layout/out")), None)).unwrap_err();
    assert!(matches!(err, Error::OutputInsideInput(_)), "{err}");
}

/// Writes `files` (relative path, content) under a new directory.
fn export(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (rel, text) in files {
        let path = dir.path().join("in").join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

fn include_problem(files: &[(&str, &str)]) -> (IncludeProblem, String) {
    let dir = export(files);
    let out = dir.path().join("out/main.xml");
    match xep0227::run(&options(dir.path().join("in/main.xml"), Some(out.clone()), None)) {
        Err(Error::Include { problem, href, .. }) => {
            assert!(!out.exists(), "no main output after an error");
            (problem, href)
        }
        other => panic!("expected an include error, got {other:?}"),
    }
}

#[test]
fn unsafe_includes_are_refused() {
    let main = |href: &str| {
        format!(
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='{href}'/></server-data>"
        )
    };
    let host = "<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='h'><xi:include href='main.xml'/></host>";
    assert_eq!(include_problem(&[("main.xml", &main("/etc/passwd"))]).0, IncludeProblem::NotRelative);
    assert_eq!(include_problem(&[("main.xml", &main("file:///etc/passwd"))]).0, IncludeProblem::NotRelative);
    assert_eq!(
        include_problem(&[("main.xml", &main("../outside.xml")), ("../outside.xml", host)]).0,
        IncludeProblem::Escapes
    );
    assert_eq!(
        include_problem(&[("main.xml", &main("h.xml")), ("h.xml", host)]),
        (IncludeProblem::Cycle, "main.xml".into())
    );
    assert_eq!(include_problem(&[("main.xml", &main("main.xml"))]).0, IncludeProblem::Cycle);
    let xpointer = main("h.xml' xpointer='x");
    assert_eq!(include_problem(&[("main.xml", &xpointer), ("h.xml", host)]).0, IncludeProblem::Unsupported("xpointer"));
    let no_href =
        "<server-data xmlns='urn:xmpp:pie:0'><include xmlns='http://www.w3.org/2001/XInclude'/></server-data>";
    assert_eq!(include_problem(&[("main.xml", no_href)]).0, IncludeProblem::NoHref);
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_export_is_refused() {
    let main = "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='link.xml'/></server-data>";
    let dir = export(&[("main.xml", main), ("../secret.xml", "<host xmlns='urn:xmpp:pie:0' jid='h'/>")]);
    std::os::unix::fs::symlink(dir.path().join("secret.xml"), dir.path().join("in/link.xml")).unwrap();
    let err = xep0227::run(&options(dir.path().join("in/main.xml"), None, None)).unwrap_err();
    assert!(matches!(err, Error::Include { problem: IncludeProblem::Escapes, .. }), "{err}");
}

#[test]
fn malformed_xml_is_an_error_naming_the_file_and_byte() {
    let cases: &[(&str, &str)] = &[
        ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'></host></server-data>", "byte 65"),
        ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'><vCard", "byte 65: syntax error"),
        ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>", "ends at byte 65 before"),
        ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'>", "ends at byte 50 before"),
        (
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>&bogus</user></host></server-data>",
            "byte 65: ill-formed",
        ),
        (
            "<server-data xmlns='urn:xmpp:pie:0'><p:x/></server-data>",
            "byte 36: the namespace prefix `p` is not declared",
        ),
        ("<server-data xmlns='urn:xmpp:pie:0'></server-data><server-data xmlns='urn:xmpp:pie:0'/>", "a second root"),
        ("<html xmlns='http://www.w3.org/1999/xhtml'/>", "not XEP-0227's"),
        ("<user xmlns='urn:xmpp:pie:0' name='a'/>", "has no host"),
        ("<server-data xmlns='urn:xmpp:pie:0'><host><user name='a'/></host></server-data>", "without a jid"),
        ("", "no root element"),
        ("just text", "no root element"),
    ];
    for (xml, expected) in cases {
        let err = rewrite(xml.as_bytes(), AccessModel::Open).expect_err(xml).to_string();
        assert!(err.starts_with("test.xml: ") && err.contains(expected), "{xml}\n  gave: {err}");
    }
    // Through the file system, the error names the file.
    let dir = export(&[("bad.xml", cases[0].0)]);
    let err =
        xep0227::run(&options(dir.path().join("in/bad.xml"), Some(dir.path().join("out.xml")), None)).unwrap_err();
    assert!(err.to_string().starts_with("bad.xml: malformed XML at byte 65"), "{err}");
    assert!(!dir.path().join("out.xml").exists() && files(dir.path()) == ["in/bad.xml"], "{:?}", files(dir.path()));
}

#[test]
fn a_user_without_name_or_with_an_include_is_refused_and_copied() {
    let export = "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'>\
        <user><vCard xmlns='vcard-temp'><PHOTO><BINVAL>iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGM4oaEBAALUARkFUI+kAAAAAElFTkSuQmCC</BINVAL></PHOTO></vCard></user>\
        </host></server-data>";
    let (out, reports) = rewrite(export.as_bytes(), AccessModel::Open).unwrap();
    assert_eq!(out, export.as_bytes());
    assert!(matches!(reports[0].outcome, Outcome::Refused { why: Why::NoName, .. }), "{reports:?}");
    let dir = TempDir::new().unwrap();
    let part = "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>";
    let main = "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><host jid='h'>\
        <user name='a'><xi:include href='part.xml'/></user></host></server-data>";
    for (rel, text) in [("main.xml", main), ("part.xml", part)] {
        fs::write(dir.path().join(rel), text).unwrap();
    }
    let out = dir.path().join("out/main.xml");
    let report = dir.path().join("r.json");
    xep0227::run(&options(dir.path().join("main.xml"), Some(out.clone()), Some(report.clone()))).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), main);
    assert_eq!(fs::read_to_string(dir.path().join("out/part.xml")).unwrap(), part);
    let report: Value = serde_json::from_slice(&fs::read(report).unwrap()).unwrap();
    assert_eq!(outcomes(&report), [row("a@h", "refused", "include-in-user")]);
}

#[test]
fn an_image_shared_by_many_users_is_one_rendition() {
    let tiny = b64::encode(&fs::read(fixtures_dir().join("images/tiny-5x3.jpg")).unwrap());
    let users: String = (0..50)
        .map(|i| {
            format!("<user name='u{i}'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>{tiny}</BINVAL></PHOTO></vCard></user>")
        })
        .collect();
    let export = format!("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'>{users}</host></server-data>");
    let (_, reports) = rewrite(export.as_bytes(), AccessModel::Open).unwrap();
    let hashes: Vec<_> = reports
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Converted { hash, source: Source::Vcard, .. } => *hash,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(hashes.len() == 50 && hashes.iter().all(|h| *h == hashes[0]));
}

// ---------------------------------------------------------------------------------------------------------------
// The command line

#[test]
fn command_line_dry_run_and_errors() {
    let bin = env!("CARGO_BIN_EXE_avatar-gateway");
    let run = Command::new(bin).args(["migrate", "xep0227", "--dry-run"]).arg(input("hosts.xml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.starts_with("11 accounts: 4 converted, 5 skipped, 2 refused\n"), "{stdout}");
    assert!(stdout.contains("bad-image") && stdout.contains("dry run: no export written"), "{stdout}");
    // No progress line when stdout is not a terminal.
    assert!(!stdout.contains('\r'));
    let dir = export(&[("bad.xml", "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'></server-data>")]);
    let run = Command::new(bin)
        .args(["migrate", "xep0227", "--dry-run"])
        .arg(dir.path().join("in/bad.xml"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("bad.xml: malformed XML at byte"));
    // OUT is required unless --dry-run; the access model is checked.
    let run = Command::new(bin).args(["migrate", "xep0227"]).arg(input("hosts.xml")).output().unwrap();
    assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains("OUT"));
    let run = Command::new(bin)
        .args(["migrate", "xep0227", "--dry-run", "--access-model", "authorize"])
        .arg(input("hosts.xml"))
        .output()
        .unwrap();
    assert!(
        !run.status.success() && String::from_utf8_lossy(&run.stderr).contains("open, presence, roster or whitelist")
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

/// A random attribute list: quote style and order vary, values carry entity and character references.
fn attrs() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z]{1,6}", "[a-zA-Z0-9 @./]{0,8}", any::<bool>(), any::<bool>()), 0..4).prop_map(
        |attrs| {
            let mut seen = Vec::new();
            attrs
                .into_iter()
                .filter(|(name, ..)| {
                    name != "xmlns" && !seen.contains(name) && {
                        seen.push(name.clone());
                        true
                    }
                })
                .map(|(name, value, double, entity)| {
                    let value = if entity { format!("{value}&amp;&#x41;") } else { value };
                    if double { format!(" {name}=\"{value}\"") } else { format!(" {name}='{value}'") }
                })
                .collect()
        },
    )
}

/// A child of `<user/>` that gives no avatar to add.
fn user_child() -> impl Strategy<Value = String> {
    let ws = "[ \n\t]{0,3}";
    prop_oneof![
        (attrs(), "[a-z ]{0,10}").prop_map(|(a, t)| format!("<query xmlns='jabber:iq:roster'{a}><item jid='x@y'><group>{t}</group></item></query>")),
        ("[A-Za-z ]{0,10}", ws).prop_map(|(t, w)| format!("<vCard xmlns='vcard-temp'>{w}<FN>{t}</FN><NOTE><![CDATA[<p>&]]></NOTE></vCard>")),
        Just("<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://a/b.png</EXTVAL></PHOTO></vCard>".to_owned()),
        Just("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL/></PHOTO></vCard>".to_owned()),
        Just("<query xmlns='storage:client:avatar'/>".to_owned()),
        attrs().prop_map(|a| format!("<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'{a}/></query>")),
        attrs().prop_map(|a| format!("<p:pubsub xmlns:p='http://jabber.org/protocol/pubsub'><p:items node='urn:xmpp:microblog:0'><p:item{a}/></p:items></p:pubsub>")),
        ("[a-z]{1,5}", attrs(), "[^<&\\]]{0,12}").prop_map(|(n, a, t)| format!("<!-- {n} --><{n} xmlns='urn:x:{n}'{a}>{t}&lt;&#13;<?pi data?></{n} >")),
        attrs().prop_map(|a| format!("<offline-messages><message xmlns='jabber:client'{a}><body>hi &amp; bye</body></message></offline-messages>")),
    ]
}

fn export_without_avatars() -> impl Strategy<Value = String> {
    let user = (attrs(), prop::collection::vec((user_child(), "[ \n]{0,2}"), 0..5), "[a-z]{1,6}").prop_map(
        |(a, children, name)| {
            let inner: String = children.into_iter().map(|(c, w)| c + &w).collect();
            if inner.is_empty() {
                format!("<user name='{name}'{a}/>")
            } else {
                format!("<user{a} name=\"{name}\">{inner}</user>")
            }
        },
    );
    let host = (prop::collection::vec(user, 0..4), "[a-z]{1,8}\\.org", "[ \n]{0,2}")
        .prop_map(|(users, jid, w)| format!("<host jid='{jid}'>{w}{}</host>", users.concat()));
    (prop::collection::vec(host, 0..3), any::<bool>(), any::<bool>()).prop_map(|(hosts, old, decl)| {
        let ns = if old { "http://www.xmpp.org/extensions/xep-0227.html#ns" } else { "urn:xmpp:pie:0" };
        let decl = if decl { "<?xml version='1.0' encoding='UTF-8'?>\n" } else { "" };
        format!("{decl}<!-- x --><server-data xmlns='{ns}'>{}</server-data>\n", hosts.concat())
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn nothing_to_add_means_the_same_bytes(export in export_without_avatars()) {
        let (out, reports) = rewrite(export.as_bytes(), AccessModel::Open).unwrap();
        prop_assert_eq!(String::from_utf8(out).unwrap(), export);
        prop_assert!(reports.iter().all(|r| matches!(r.outcome, Outcome::Skipped { .. })), "{:?}", reports);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = rewrite(&bytes, AccessModel::Open);
    }

    #[test]
    fn damaged_exports_never_panic(cut in 0usize..9000, flip in 0usize..9000, byte in any::<u8>()) {
        let mut export = fs::read(input("hosts.xml")).unwrap();
        if let Some(b) = export.get_mut(flip) {
            *b = byte;
        }
        export.truncate(cut);
        let _ = rewrite(&export, AccessModel::Open);
    }
}
