//! The state store: round trips, serial and lineage, atomic batches, formats, the writer lock
//! across processes, and sensitive values at rest.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use meshplan::cluster::{ApiResourceInfo, Discovery, ObjectRef};
use meshplan::state::{
    DiscoveryCacheEntry, JournalEntry, JournalRecord, LiveSnapshot, Mutation, ObjectRecord,
    Outcome, RenderCacheEntry, RunRecord, SledStore, StateError, StateStore, WriteBatch,
    WriterLock, digest_json,
};
use serde_json::{Value, json};

/// Set in a child process: the state directory it works on.
const CHILD_DIR: &str = "MESHPLAN_TEST_STATE_CHILD_DIR";

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, "apply").unwrap()
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "linkerd"}, "data": {"value": value}})
}

fn record(store: &dyn StateStore, node: &str, body: &Value) -> ObjectRecord {
    ObjectRecord {
        node: node.to_owned(),
        object: ObjectRef::from_object(body).unwrap(),
        uid: Some(format!(
            "uid-{}",
            body["metadata"]["name"].as_str().unwrap()
        )),
        resource_version: Some("42".to_owned()),
        applied_digest: digest_json(body),
        last_applied: store.protect(body, &[]).unwrap(),
    }
}

/// Re-runs this test binary on one test, as a second meshplan process would be.
fn spawn_child(test: &str, dir: &Path, envs: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until a line starting with `prefix`; returns that line.
fn read_until(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "child ended before printing {prefix}"
        );
        if let Some(at) = line.find(prefix) {
            return line[at..].trim().to_owned();
        }
    }
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

#[test]
fn records_round_trip_sorted_with_serial_and_lineage() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!SledStore::exists(tmp.path()));
    let store = open(tmp.path());
    assert!(SledStore::exists(tmp.path()));
    let m0 = store.meta().unwrap();
    assert_eq!((m0.format, m0.serial), (meshplan::state::FORMAT_VERSION, 0));
    assert!(uuid::Uuid::parse_str(&m0.lineage).is_ok());

    let b = record(&store, "manifest.b", &config_map("b", "2"));
    let a2 = record(&store, "helm.linkerd_crds", &config_map("z", "1"));
    let a1 = record(&store, "helm.linkerd_crds", &config_map("a", "1"));
    let m1 = store
        .commit(
            WriteBatch::new()
                .put_object(b.clone())
                .put_object(a2.clone())
                .put_object(a1.clone()),
        )
        .unwrap();
    assert_eq!(m1.serial, 1);
    assert_eq!(m1.lineage, m0.lineage);
    assert_eq!(
        store.objects().unwrap(),
        vec![a1.clone(), a2.clone(), b.clone()]
    );
    assert_eq!(
        store.node_objects("helm.linkerd_crds").unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(store.node_objects("helm.linkerd").unwrap(), vec![]);
    assert_eq!(
        store.object("manifest.b", &b.object).unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.object("manifest.a", &b.object).unwrap(), None);

    // Cache-only batches do not bump the serial; object removals do.
    let m2 = store
        .commit(WriteBatch::new().put_render(
            "d1",
            RenderCacheEntry {
                objects: vec![],
                meta: Default::default(),
                created_at: jiff::Timestamp::UNIX_EPOCH,
            },
        ))
        .unwrap();
    assert_eq!(m2.serial, 1);
    let m3 = store
        .commit(WriteBatch::new().remove_object("manifest.b", &b.object))
        .unwrap();
    assert_eq!(m3.serial, 2);
    drop(store);

    // Everything survives a reopen.
    let store = open(tmp.path());
    assert_eq!(store.meta().unwrap(), m3);
    assert_eq!(store.objects().unwrap(), vec![a1, a2]);
    assert!(store.render_cache("d1").unwrap().is_some());
    assert!(store.render_cache("d2").unwrap().is_none());
}

#[test]
fn a_failed_batch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = record(&store, "manifest.a", &config_map("a", "1"));
    let b = record(&store, "manifest.a", &config_map("b", "1"));
    let orphan = JournalEntry {
        run: "no-such-run".into(),
        step: 1,
        node: "manifest.a".into(),
        object: a.object.clone(),
        mutation: Mutation::Apply,
        record: JournalRecord::Before {
            live: LiveSnapshot::Absent,
        },
        previous_record: None,
    };
    let err = store
        .commit(
            WriteBatch::new()
                .put_object(a.clone())
                .put_object(b)
                .journal(orphan),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Batch { message, .. } if message.contains("no-such-run")),
        "{err}"
    );
    assert_eq!(store.objects().unwrap(), vec![]);
    assert_eq!(store.meta().unwrap().serial, 0);

    // A stale expected serial refuses the whole batch too.
    store
        .commit(WriteBatch::new().put_object(a.clone()))
        .unwrap();
    let err = store
        .commit(
            WriteBatch::new()
                .remove_object("manifest.a", &a.object)
                .expect_serial(0),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::SerialMismatch {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.objects().unwrap(), vec![a.clone()]);
    store
        .commit(
            WriteBatch::new()
                .remove_object("manifest.a", &a.object)
                .expect_serial(1),
        )
        .unwrap();
    assert_eq!(store.objects().unwrap(), vec![]);
}

#[test]
fn journal_lists_unfinished_runs_and_clears_finished_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let live = config_map("cm", "old");
    let object = ObjectRef::from_object(&live).unwrap();
    let run = RunRecord::start("apply");
    let entry = |step, record| JournalEntry {
        run: run.run.clone(),
        step,
        node: "manifest.a".into(),
        object: object.clone(),
        mutation: Mutation::Apply,
        record,
        previous_record: None,
    };
    let snapshot = LiveSnapshot::Present(store.protect(&live, &[]).unwrap());
    store
        .commit(WriteBatch::new().begin_run(run.clone()).journal(entry(
            1,
            JournalRecord::Before {
                live: snapshot.clone(),
            },
        )))
        .unwrap();
    store
        .commit(WriteBatch::new().journal(entry(
            1,
            JournalRecord::After {
                outcome: Outcome::Succeeded {
                    resource_version: Some("7".into()),
                },
            },
        )))
        .unwrap();
    store
        .commit(WriteBatch::new().journal(entry(
            2,
            JournalRecord::Before {
                live: LiveSnapshot::Absent,
            },
        )))
        .unwrap();
    // An entry is never overwritten.
    let err = store
        .commit(WriteBatch::new().journal(entry(
            2,
            JournalRecord::Before {
                live: snapshot.clone(),
            },
        )))
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Batch { message, .. } if message.contains("step 2")),
        "{err}"
    );
    drop(store);

    let store = open(tmp.path());
    let runs = store.unfinished_runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run, run);
    assert_eq!(runs[0].entries.len(), 3);
    assert_eq!(
        runs[0].entries[0].record,
        JournalRecord::Before { live: snapshot }
    );
    let open_steps: Vec<u64> = runs[0].open_steps().iter().map(|e| e.step).collect();
    assert_eq!(open_steps, vec![2]);

    store.commit(WriteBatch::new().clear_run(&run.run)).unwrap();
    assert_eq!(store.unfinished_runs().unwrap(), vec![]);
    assert!(store.dump().unwrap().contains("unfinished runs (0)"));
    let err = store
        .commit(WriteBatch::new().clear_run(&run.run))
        .unwrap_err();
    assert!(matches!(err, StateError::Batch { .. }), "{err}");
}

#[test]
fn discovery_cache_is_kept_with_its_time() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert_eq!(store.discovery_cache().unwrap(), None);
    let fetched_at: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let entry = DiscoveryCacheEntry {
        fetched_at,
        discovery: Discovery::new(vec![ApiResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
            verbs: vec!["get".into(), "list".into()],
            subresources: vec![],
        }]),
    };
    store
        .commit(WriteBatch::new().put_discovery(entry.clone()))
        .unwrap();
    let got = store.discovery_cache().unwrap().unwrap();
    assert_eq!(got, entry);
    let later: jiff::Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
    assert!(got.is_fresh(later, std::time::Duration::from_secs(60)));
    assert!(!got.is_fresh(later, std::time::Duration::from_secs(10)));
    let earlier: jiff::Timestamp = "2025-12-31T23:59:00Z".parse().unwrap();
    assert!(!got.is_fresh(earlier, std::time::Duration::from_secs(600)));
}

#[test]
fn a_newer_format_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    {
        // A later meshplan wrote format 9.
        let db = sled::open(tmp.path().join("db")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &9u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(tmp.path(), "plan").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StateError::NewerFormat { found: 9, .. }),
        "{text}"
    );
    assert!(text.contains(&tmp.path().display().to_string()), "{text}");
    assert!(
        text.contains("newer meshplan (format 9, this one knows 1)"),
        "{text}"
    );
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("upgrade meshplan"), "{help}");
    // The lock was released, and the format left as it was.
    assert_eq!(WriterLock::holder(tmp.path()).unwrap(), None);
    let db = sled::open(tmp.path().join("db")).unwrap();
    let format = db
        .open_tree("meta")
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap();
    assert_eq!(format.as_ref(), &9u32.to_be_bytes());
}

#[test]
fn a_second_handle_in_this_process_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let dir = tmp.path().to_path_buf();
    let err = std::thread::spawn(move || SledStore::open(&dir, "destroy").unwrap_err())
        .join()
        .unwrap();
    match &err {
        StateError::Locked { holder, .. } => {
            assert_eq!(holder.pid, std::process::id());
            assert_eq!(holder.command, "apply");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(store);
    drop(open(tmp.path()));
}

/// Child role: holds the state open until its stdin closes.
fn hold_lock_child(dir: &Path) {
    let store = open(dir);
    println!("LOCKED {}", std::process::id());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

#[test]
fn the_lock_is_exclusive_across_processes_and_a_dead_holder_blocks_nobody() {
    if let Some(dir) = child_dir() {
        hold_lock_child(&dir);
        return;
    }
    let test = "state::the_lock_is_exclusive_across_processes_and_a_dead_holder_blocks_nobody";
    let tmp = tempfile::tempdir().unwrap();

    // A live holder: refused at once, naming it.
    let mut child = spawn_child(test, tmp.path(), &[]);
    let line = read_until(&mut child, "LOCKED ");
    let pid: u32 = line["LOCKED ".len()..].parse().unwrap();
    assert_eq!(pid, child.id());
    let err = SledStore::open(tmp.path(), "apply").unwrap_err();
    match &err {
        StateError::Locked { holder, .. } => {
            assert_eq!(holder.pid, pid);
            assert_eq!(holder.command, "apply");
            assert_eq!(holder.host, meshplan::state::lock::host_name());
        }
        other => panic!("expected Locked, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {pid} on host")) && text.contains("since"),
        "{text}"
    );
    assert!(matches!(
        WriterLock::break_stale(tmp.path()),
        Err(StateError::LockHolderAlive { .. })
    ));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    drop(open(tmp.path()));

    // A holder killed with SIGKILL blocks nobody: the operating system released its lock,
    // and the next writer takes it at once, without `meshplan state unlock`.
    let mut child = spawn_child(test, tmp.path(), &[]);
    read_until(&mut child, "LOCKED ");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(WriterLock::holder(tmp.path()).unwrap(), None);
    let store = open(tmp.path());
    assert_eq!(store.meta().unwrap().serial, 0);
    drop(store);
    // A reader never needs the lock: it opens while nobody has the database open.
    let reader = SledStore::open_for(
        tmp.path(),
        "plan",
        meshplan::state::Access::Read(Default::default()),
    )
    .unwrap();
    assert!(!reader.is_writer());
}

/// Child role: commits two objects per batch with the same counter, forever.
fn writer_loop_child(dir: &Path) {
    let store = open(dir);
    for i in 1u64.. {
        let a = record(&store, "manifest.a", &config_map("a", &i.to_string()));
        let b = record(&store, "manifest.a", &config_map("b", &i.to_string()));
        store
            .commit(WriteBatch::new().put_object(a).put_object(b))
            .unwrap();
        println!("COMMITTED {i}");
    }
}

#[test]
fn a_writer_killed_mid_run_leaves_whole_batches() {
    if let Some(dir) = child_dir() {
        writer_loop_child(&dir);
        return;
    }
    let test = "state::a_writer_killed_mid_run_leaves_whole_batches";
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child(test, tmp.path(), &[]);
    let line = read_until(&mut child, "COMMITTED 25");
    assert_eq!(line, "COMMITTED 25");
    child.kill().unwrap();
    child.wait().unwrap();
    WriterLock::break_stale(tmp.path()).unwrap().unwrap();
    let store = open(tmp.path());
    let objects = store.objects().unwrap();
    assert_eq!(objects.len(), 2);
    let value = |r: &ObjectRecord| {
        r.last_applied.redacted()["data"]["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (value(&objects[0]), value(&objects[1]));
    assert_eq!(a, b, "a batch was half written");
    let serial = store.meta().unwrap().serial;
    assert_eq!(serial.to_string(), a);
    assert!(serial >= 25);
}

const CLEAR_SECRET: &str = "hunter2-TOP-SECRET-password";
const CLEAR_CERT: &str = "-----BEGIN CERTIFICATE----- MIIBszCCAVmgAwIBAgIRAK";

fn secret_body() -> Value {
    use base64::Engine as _;
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "linkerd-identity-issuer", "namespace": "linkerd"},
           "type": "kubernetes.io/tls",
           "data": {"ca.crt": base64::engine::general_purpose::STANDARD.encode(CLEAR_CERT)},
           "stringData": {"password": CLEAR_SECRET}})
}

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secret_values_are_never_stored_in_clear() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let secret = secret_body();
    let protected = store.protect(&secret, &[]).unwrap();
    let visible = config_map("visible", "plainly-visible-config-value");
    let run = RunRecord::start("apply");
    store
        .commit(
            WriteBatch::new()
                .put_object(record(&store, "manifest.identity_issuer", &secret))
                .put_object(record(&store, "manifest.cfg", &visible))
                .put_render(
                    "digest1",
                    RenderCacheEntry {
                        objects: vec![protected.clone()],
                        meta: [("chart".to_owned(), "linkerd-control-plane".to_owned())].into(),
                        created_at: jiff::Timestamp::UNIX_EPOCH,
                    },
                )
                .begin_run(run.clone())
                .journal(JournalEntry {
                    run: run.run.clone(),
                    step: 1,
                    node: "manifest.identity_issuer".into(),
                    object: ObjectRef::from_object(&secret).unwrap(),
                    mutation: Mutation::Replace,
                    record: JournalRecord::Before {
                        live: LiveSnapshot::Present(protected),
                    },
                    previous_record: None,
                }),
        )
        .unwrap();

    // What a later run needs comes back.
    let rec = store
        .object(
            "manifest.identity_issuer",
            &ObjectRef::from_object(&secret).unwrap(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(store.reveal(&rec.last_applied).unwrap(), secret);
    let dump = store.dump().unwrap();
    assert!(dump.contains("(sensitive:"), "{dump}");
    assert!(dump.contains("(+ sealed values)"), "{dump}");
    drop(store);

    let forbidden: Vec<Vec<u8>> = vec![
        CLEAR_SECRET.as_bytes().to_vec(),
        CLEAR_CERT.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(CLEAR_CERT)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(CLEAR_SECRET)
            .into_bytes(),
    ];
    let files = all_bytes(tmp.path());
    assert!(files.iter().any(|(p, _)| p.ends_with("state.key")));
    for (path, bytes) in &files {
        for needle in &forbidden {
            assert!(
                !contains(bytes, needle),
                "{} holds a secret in clear",
                path.display()
            );
        }
    }
    // The check can fail: a non-sensitive value is found in the same files.
    assert!(
        files
            .iter()
            .any(|(_, b)| contains(b, b"plainly-visible-config-value"))
    );
    assert!(!dump.contains(CLEAR_SECRET));

    // The key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("state.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_state_key_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    let key = tmp.path().join("state.key");

    // A key readable by others is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SledStore::open(tmp.path(), "plan").unwrap_err();
    assert!(
        matches!(err, StateError::KeyFileMode { mode: 0o644, .. }),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another key is detected before anything is decrypted.
    let original = std::fs::read_to_string(&key).unwrap();
    use base64::Engine as _;
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode([3u8; 32]),
    )
    .unwrap();
    let err = SledStore::open(tmp.path(), "plan").unwrap_err();
    assert!(matches!(err, StateError::WrongKey { .. }), "{err}");

    // A lost key is not silently replaced by a new one.
    std::fs::remove_file(&key).unwrap();
    let err = SledStore::open(tmp.path(), "plan").unwrap_err();
    assert!(matches!(err, StateError::MissingKey { .. }), "{err}");
    assert!(!key.exists());
    std::fs::write(&key, original).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(open(tmp.path()));
}

/// Child role: writes a Secret record with the key from the environment.
fn env_key_child(dir: &Path) {
    let store = open(dir);
    let rec = record(&store, "manifest.s", &secret_body());
    store.commit(WriteBatch::new().put_object(rec)).unwrap();
    let back = store.objects().unwrap();
    assert_eq!(store.reveal(&back[0].last_applied).unwrap(), secret_body());
    println!("WROTE");
}

#[test]
fn the_key_can_come_from_the_environment() {
    if let Some(dir) = child_dir() {
        env_key_child(&dir);
        return;
    }
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let mut child = spawn_child(
        "state::the_key_can_come_from_the_environment",
        tmp.path(),
        &[("MESHPLAN_STATE_KEY", &key)],
    );
    read_until(&mut child, "WROTE");
    assert!(child.wait().unwrap().success());
    // No key file was created, so this process (without the variable) cannot read it.
    assert!(!tmp.path().join("state.key").exists());
    let err = SledStore::open(tmp.path(), "plan").unwrap_err();
    assert!(matches!(err, StateError::MissingKey { .. }), "{err}");
}

#[test]
fn the_dump_is_deterministic_and_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
                    "metadata": {"namespace": "linkerd", "name": "cfg"}, "data": {"z": "1", "a": "2"}});
    let run = RunRecord {
        run: "00000000-0000-4000-8000-000000000001".into(),
        command: "apply".into(),
        started_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    };
    store
        .commit(
            WriteBatch::new()
                .put_object(record(&store, "manifest.cfg", &cm))
                .put_object(record(
                    &store,
                    "helm.linkerd_crds",
                    &config_map("crds", "x"),
                ))
                .begin_run(run.clone())
                .journal(JournalEntry {
                    run: run.run.clone(),
                    step: 1,
                    node: "manifest.cfg".into(),
                    object: ObjectRef::from_object(&cm).unwrap(),
                    mutation: Mutation::Apply,
                    record: JournalRecord::Before {
                        live: LiveSnapshot::Absent,
                    },
                    previous_record: None,
                })
                .journal(JournalEntry {
                    run: run.run.clone(),
                    step: 1,
                    node: "manifest.cfg".into(),
                    object: ObjectRef::from_object(&cm).unwrap(),
                    mutation: Mutation::Apply,
                    record: JournalRecord::After {
                        outcome: Outcome::Failed {
                            message: "conflict".into(),
                        },
                    },
                    previous_record: None,
                }),
        )
        .unwrap();
    let lineage = store.meta().unwrap().lineage;
    let dump = store.dump().unwrap();
    assert_eq!(dump, store.dump().unwrap());
    insta::with_settings!({filters => vec![(lineage.as_str(), "[lineage]")]}, {
        insta::assert_snapshot!(dump);
    });
}

#[test]
fn a_database_held_without_the_lock_is_reported_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    // Someone removed the lock file of a running meshplan: the database's own lock still
    // protects it, and the error says so instead of sled's raw text.
    let removed = WriterLock::force_break(tmp.path()).unwrap().unwrap();
    assert_eq!(removed.pid, std::process::id());
    let err = SledStore::open(tmp.path(), "apply").unwrap_err();
    assert!(matches!(err, StateError::InUse { .. }), "{err}");
    // The failed open released the lock it took.
    assert_eq!(WriterLock::holder(tmp.path()).unwrap(), None);
    drop(store);
    drop(open(tmp.path()));
}

#[test]
fn concurrent_commits_from_many_threads_each_count_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(tmp.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let body = config_map(&format!("t{t}-{i}"), "v");
                    let rec = record(store.as_ref(), &format!("manifest.t{t}"), &body);
                    store.commit(WriteBatch::new().put_object(rec)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.meta().unwrap().serial, 160);
    assert_eq!(store.objects().unwrap().len(), 160);
    assert_eq!(store.node_objects("manifest.t3").unwrap().len(), 20);
}
