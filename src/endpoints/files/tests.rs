use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, json};

use super::*;
use crate::endpoints::{EndpointConfig, ErrorKind, FileMeta, FileSource};

/// A work dir with `root/` (the endpoint's) and `outside/secret.txt` beside it.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&root).expect("root");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("secret.txt"), "outside secret").expect("secret");
    Dirs {
        _tmp: tmp,
        root,
        outside,
    }
}

/// The config `yaml` (a flow mapping's inside, without `type` and `root`) over `root`.
fn config(root: &Path, yaml: &str) -> FilesConfig {
    let text = format!("{{type: files, root: '{}', {yaml}}}", root.display());
    match serde_yaml::from_str::<EndpointConfig>(&text).expect(&text) {
        EndpointConfig::Files(c) => c,
        other => panic!("not a files config: {other:?}"),
    }
}

fn endpoint(root: &Path, yaml: &str) -> FilesEndpoint {
    FilesEndpoint::new("docs", &config(root, yaml)).expect("builds")
}

fn request(vars: serde_json::Value) -> EndpointRequest {
    EndpointRequest {
        variables: vars.as_object().cloned().unwrap_or_default(),
        ..EndpointRequest::default()
    }
}

async fn call(ep: &FilesEndpoint, vars: serde_json::Value) -> Result<Value, EndpointError> {
    ep.call(&request(vars)).await.map(|r| r.output)
}

fn no_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).expect("dir").all(|e| {
        !e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")
    })
}

// --- read ---

#[tokio::test]
async fn read_as_file_gives_a_file_value_with_name_mime_type_and_the_bytes() {
    let d = dirs();
    std::fs::create_dir(d.root.join("in")).expect("dir");
    let bytes = b"%PDF-1.7\x00\xff\xfe binary";
    std::fs::write(d.root.join("in/inv-7.pdf"), bytes).expect("file");
    let ep = endpoint(&d.root, "operation: read, path: 'in/inv-{{ id }}.pdf'");
    assert!(!ep.side_effects());

    let out = call(&ep, json!({"id": 7})).await.expect("reads");
    assert_eq!(out["path"], "in/inv-7.pdf");
    assert_eq!(out["name"], "inv-7.pdf");
    assert_eq!(out["size"], bytes.len());
    let typed = value::typed_variable(&out["content"]).expect("a File value");
    assert_eq!(typed.value_info["filename"], "inv-7.pdf");
    assert_eq!(typed.value_info["mimeType"], "application/pdf");
    let decoded = BASE64
        .decode(typed.value.as_str().expect("text"))
        .expect("b64");
    assert_eq!(decoded, bytes);
}

#[tokio::test]
async fn read_as_text_and_as_json() {
    let d = dirs();
    std::fs::write(d.root.join("note.txt"), "héllo\n").expect("file");
    std::fs::write(d.root.join("order.json"), r#"{"id": 7, "items": [1, 2]}"#).expect("file");
    let text = endpoint(&d.root, "operation: read, path: note.txt, as: text");
    assert_eq!(
        call(&text, json!({})).await.expect("text")["content"],
        "héllo\n"
    );
    let doc = endpoint(&d.root, "operation: read, path: order.json, as: json");
    assert_eq!(
        call(&doc, json!({})).await.expect("json")["content"],
        json!({"id": 7, "items": [1, 2]})
    );
}

#[tokio::test]
async fn text_that_is_not_utf8_and_json_that_is_not_json_are_permanent() {
    let d = dirs();
    std::fs::write(d.root.join("bin.txt"), b"\xff\xfe").expect("file");
    let text = endpoint(&d.root, "operation: read, path: bin.txt, as: text");
    let e = call(&text, json!({})).await.expect_err("not text");
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!(e.code.as_deref(), Some(class::FILE_NOT_TEXT));
    assert!(e.message.contains("`bin.txt`"), "{e}");
    let doc = endpoint(&d.root, "operation: read, path: bin.txt, as: json");
    let e = call(&doc, json!({})).await.expect_err("not json");
    assert_eq!(e.code.as_deref(), Some(class::INVALID_JSON));
}

#[tokio::test]
async fn a_missing_file_is_the_bpmn_error_file_not_found_naming_path_and_variable() {
    let d = dirs();
    let ep = endpoint(&d.root, "operation: read, path: '{{ invoice_id }}.pdf'");
    let e = call(&ep, json!({"invoice_id": "A-1"}))
        .await
        .expect_err("missing");
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "FILE_NOT_FOUND".into()
        }
    );
    assert_eq!(e.code.as_deref(), Some(class::FILE_NOT_FOUND));
    assert!(
        e.message
            .contains("path `A-1.pdf` (from `invoice_id`) does not exist"),
        "{e}"
    );
    let ep = endpoint(
        &d.root,
        "operation: read, path: x.pdf, not_found_error_code: null",
    );
    let e = call(&ep, json!({})).await.expect_err("missing");
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!(e.code.as_deref(), Some(class::FILE_NOT_FOUND));
}

#[tokio::test]
async fn reading_a_directory_is_an_invalid_path() {
    let d = dirs();
    std::fs::create_dir(d.root.join("sub")).expect("dir");
    let ep = endpoint(&d.root, "operation: read, path: sub");
    let e = call(&ep, json!({})).await.expect_err("a directory");
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!(e.code.as_deref(), Some(class::INVALID_PATH));
    assert!(e.message.contains("is a directory"), "{e}");
}

// --- escapes: one test per attempt ---

/// Reading `name` (through the variable `name`) is refused as outside the root, and the
/// message names the variable; returns the message.
async fn refused_escape(root: &Path, name: &str) -> String {
    let ep = endpoint(root, "operation: read, path: '{{ name }}', as: text");
    let e = call(&ep, json!({"name": name}))
        .await
        .expect_err("must be refused");
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert_eq!(e.code.as_deref(), Some(class::PATH_OUTSIDE_ROOT), "{e}");
    assert!(e.message.contains("(from `name`)"), "{e}");
    assert!(e.message.contains("leaves the root"), "{e}");
    assert!(!e.message.contains("outside secret"));
    e.message
}

#[tokio::test]
async fn escape_by_dot_dot_is_refused() {
    let d = dirs();
    let m = refused_escape(&d.root, "../outside/secret.txt").await;
    assert!(m.contains("`..` components are refused"), "{m}");
}

#[tokio::test]
async fn escape_by_an_absolute_path_is_refused() {
    let d = dirs();
    let m = refused_escape(&d.root, "/etc/passwd").await;
    assert!(m.contains("absolute paths are refused"), "{m}");
    let m = refused_escape(&d.root, &d.outside.join("secret.txt").display().to_string()).await;
    assert!(m.contains("absolute paths are refused"), "{m}");
}

#[tokio::test]
async fn escape_by_dot_dot_inside_a_path_is_refused() {
    let d = dirs();
    std::fs::create_dir(d.root.join("a")).expect("dir");
    refused_escape(&d.root, "a/../../outside/secret.txt").await;
    // Even one that would stay inside: `..` is not resolved by text.
    refused_escape(&d.root, "a/../x").await;
}

#[tokio::test]
async fn escape_by_a_symlink_to_a_file_outside_is_refused() {
    let d = dirs();
    symlink(d.outside.join("secret.txt"), d.root.join("link.txt")).expect("symlink");
    refused_escape(&d.root, "link.txt").await;
    // A relative symlink climbing out is refused the same way.
    symlink("../outside/secret.txt", d.root.join("rel.txt")).expect("symlink");
    refused_escape(&d.root, "rel.txt").await;
}

#[tokio::test]
async fn escape_by_a_symlinked_directory_is_refused_for_reads_and_writes() {
    let d = dirs();
    symlink(&d.outside, d.root.join("sub")).expect("symlink");
    refused_escape(&d.root, "sub/secret.txt").await;
    let ep = endpoint(&d.root, "operation: write, path: sub/new.txt, content: x");
    let e = call(&ep, json!({})).await.expect_err("refused");
    assert_eq!(e.code.as_deref(), Some(class::PATH_OUTSIDE_ROOT), "{e}");
    assert!(
        !d.outside.join("new.txt").exists(),
        "nothing written outside"
    );
    assert!(no_temp_files(&d.outside), "no temp file outside either");
}

#[tokio::test]
async fn a_symlink_that_stays_inside_the_root_is_followed() {
    let d = dirs();
    std::fs::write(d.root.join("real.txt"), "inside").expect("file");
    symlink("real.txt", d.root.join("alias.txt")).expect("symlink");
    let ep = endpoint(&d.root, "operation: read, path: alias.txt, as: text");
    assert_eq!(
        call(&ep, json!({})).await.expect("reads")["content"],
        "inside"
    );
}

/// A symlink swapped in for a directory while operations run (no check-then-use window): the
/// parent `sub` is exchanged atomically, over and over, between a real directory and a symlink
/// to the outside. Reads see the inside file or are refused; writes never land outside.
#[test]
fn escape_by_a_symlink_swapped_in_during_use_is_refused() {
    let d = dirs();
    std::fs::create_dir(d.root.join("sub")).expect("dir");
    std::fs::write(d.root.join("sub/secret.txt"), "inside").expect("file");
    symlink(&d.outside, d.root.join("swap")).expect("symlink");
    let root = Root::open(&d.root).expect("root");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sub, swap) = (stop.clone(), d.root.join("sub"), d.root.join("swap"));
        std::thread::spawn(move || {
            let flags = rustix::fs::RenameFlags::EXCHANGE;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(rustix::fs::CWD, &sub, rustix::fs::CWD, &swap, flags)
                    .expect("exchange");
            }
        })
    };
    let read = RelPath::parse("sub/secret.txt", false).expect("path");
    let (mut inside, mut refused) = (0, 0);
    for i in 0..200_000 {
        match root.read(&read, 1024) {
            Ok(bytes) => {
                assert_eq!(bytes, b"inside", "read through the swapped-in symlink");
                inside += 1;
            }
            Err(FsError::Escape(_)) | Err(FsError::NotFound) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
        if i % 16 == 0 {
            let write = RelPath::parse(&format!("sub/w{i}.txt"), false).expect("path");
            let _ = root.write(&write, b"w", true);
        }
        if inside >= 20 && refused >= 20 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    let landed_outside: Vec<_> = std::fs::read_dir(&d.outside)
        .expect("outside")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "secret.txt")
        .collect();
    assert!(
        landed_outside.is_empty(),
        "written outside: {landed_outside:?}"
    );
    assert!(
        inside > 0 && refused > 0,
        "the swap must have raced the reads both ways (inside {inside}, refused {refused})"
    );
}

// --- size caps ---

#[tokio::test]
async fn a_file_above_max_size_is_not_read_and_the_error_says_its_size() {
    let d = dirs();
    std::fs::write(d.root.join("big.bin"), vec![7u8; 2048]).expect("file");
    let ep = endpoint(&d.root, "operation: read, path: big.bin, max_size: 1KiB");
    let e = call(&ep, json!({})).await.expect_err("too large");
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "FILE_TOO_LARGE".into()
        }
    );
    assert_eq!(e.code.as_deref(), Some(class::FILE_TOO_LARGE));
    assert!(
        e.message
            .contains("is 2048 bytes, more than `max_size` (1024 bytes)"),
        "{e}"
    );
    let fits = endpoint(&d.root, "operation: read, path: big.bin, max_size: 2KiB");
    assert_eq!(call(&fits, json!({})).await.expect("fits")["size"], 2048);
}

#[tokio::test]
async fn a_write_above_max_size_writes_nothing() {
    let d = dirs();
    let ep = endpoint(
        &d.root,
        "operation: write, path: out.txt, content: '{{ text }}', max_size: 10",
    );
    let e = call(&ep, json!({"text": "eleven byte"}))
        .await
        .expect_err("too large");
    assert_eq!(e.code.as_deref(), Some(class::FILE_TOO_LARGE));
    assert!(
        e.message
            .contains("is 11 bytes, more than `max_size` (10 bytes)"),
        "{e}"
    );
    assert!(!d.root.join("out.txt").exists());
    assert!(no_temp_files(&d.root));
}

// --- write ---

#[tokio::test]
async fn write_a_value_as_text_or_json_creating_parent_directories() {
    let d = dirs();
    let ep = endpoint(
        &d.root,
        "operation: write, path: 'out/{{ id }}/note.txt', content: 'Order {{ id }}'",
    );
    assert!(ep.side_effects());
    let out = call(&ep, json!({"id": 7})).await.expect("writes");
    assert_eq!(out, json!({"path": "out/7/note.txt", "size": 7}));
    assert_eq!(
        std::fs::read_to_string(d.root.join("out/7/note.txt")).expect("file"),
        "Order 7"
    );
    let ep = endpoint(
        &d.root,
        "operation: write, path: order.json, content: '{{ order }}'",
    );
    call(&ep, json!({"order": {"id": 7}}))
        .await
        .expect("writes");
    let written: Value =
        serde_json::from_slice(&std::fs::read(d.root.join("order.json")).expect("file"))
            .expect("JSON");
    assert_eq!(written, json!({"id": 7}));
    assert!(no_temp_files(&d.root));
}

#[tokio::test]
async fn overwrite_false_refuses_an_existing_file_and_keeps_it() {
    let d = dirs();
    std::fs::write(d.root.join("a.txt"), "old").expect("file");
    let ep = endpoint(&d.root, "operation: write, path: a.txt, content: new");
    let e = call(&ep, json!({})).await.expect_err("exists");
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "FILE_EXISTS".into()
        }
    );
    assert_eq!(e.code.as_deref(), Some(class::FILE_EXISTS));
    assert_eq!(
        std::fs::read_to_string(d.root.join("a.txt")).expect("file"),
        "old"
    );
    let ep = endpoint(
        &d.root,
        "operation: write, path: a.txt, content: new, overwrite: true",
    );
    call(&ep, json!({})).await.expect("overwrites");
    assert_eq!(
        std::fs::read_to_string(d.root.join("a.txt")).expect("file"),
        "new"
    );
}

/// `overwrite: false` is decided by the kernel at the rename, not by the check before: a file
/// that appears after the check is not replaced.
#[test]
fn no_replace_holds_against_a_file_created_after_the_check() {
    let d = dirs();
    let dir =
        cap_std::fs::Dir::open_ambient_dir(&d.root, cap_std::ambient_authority()).expect("dir");
    std::fs::write(d.root.join(".procos-x.tmp"), "new").expect("temp");
    std::fs::write(d.root.join("late.txt"), "late").expect("racer");
    let e = root::rename_noreplace(
        &dir,
        Path::new(".procos-x.tmp"),
        &dir,
        Path::new("late.txt"),
    )
    .expect_err("exists");
    assert!(matches!(e, FsError::Exists), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.root.join("late.txt")).expect("file"),
        "late"
    );
}

#[test]
fn a_reader_never_sees_a_partial_file() {
    let d = dirs();
    let size = 4 << 20;
    std::fs::write(d.root.join("big.bin"), vec![b'a'; size]).expect("file");
    let root = Arc::new(Root::open(&d.root).expect("root"));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, file) = (stop.clone(), d.root.join("big.bin"));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&file).expect("always there");
                assert_eq!(bytes.len(), size, "a partial file was visible");
                assert!(
                    bytes.iter().all(|b| *b == bytes[0]),
                    "a mixed file was visible"
                );
                reads += 1;
            }
            reads
        })
    };
    let path = RelPath::parse("big.bin", false).expect("path");
    for i in 0..20u8 {
        root.write(&path, &vec![b'b' + i % 2; size], true)
            .expect("writes");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);
    assert!(no_temp_files(&d.root));
}

#[tokio::test]
async fn a_failed_write_leaves_no_temp_file_and_the_target_unchanged() {
    let d = dirs();
    // The target is a non-empty directory: the final rename fails after the temp was written.
    std::fs::create_dir(d.root.join("taken")).expect("dir");
    std::fs::write(d.root.join("taken/keep.txt"), "keep").expect("file");
    let ep = endpoint(
        &d.root,
        "operation: write, path: taken, content: data, overwrite: true",
    );
    let e = call(&ep, json!({}))
        .await
        .expect_err("cannot replace a directory");
    assert_eq!(e.code.as_deref(), Some(class::IO), "{e}");
    assert!(no_temp_files(&d.root), "the temp file is gone");
    assert_eq!(
        std::fs::read_to_string(d.root.join("taken/keep.txt")).expect("kept"),
        "keep"
    );
}

/// File variables as the engine would serve them.
#[derive(Debug)]
struct Files(Map<String, Value>);

#[async_trait]
impl FileSource for Files {
    async fn load(&self, name: &str) -> Result<bytes::Bytes, EndpointError> {
        let text = self.0[name].as_str().expect("content");
        Ok(bytes::Bytes::from(BASE64.decode(text).expect("b64")))
    }
    async fn metadata(&self, _name: &str) -> Option<FileMeta> {
        None
    }
}

#[tokio::test]
async fn write_from_a_file_variable_writes_its_bytes() {
    let d = dirs();
    let bytes = b"\x00\x01binary\xff";
    let ep = endpoint(
        &d.root,
        "operation: write, path: 'out/{{ name }}', file: document",
    );
    let mut req = request(json!({"document": null, "name": "copy.bin"}));
    req.files = Some(Arc::new(Files(
        json!({"document": BASE64.encode(bytes)})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )));
    let out = ep.call(&req).await.expect("writes").output;
    assert_eq!(out["size"], bytes.len());
    assert_eq!(
        std::fs::read(d.root.join("out/copy.bin")).expect("file"),
        bytes
    );

    let e = call(&ep, json!({"name": "x"}))
        .await
        .expect_err("no variable");
    assert_eq!(e.code.as_deref(), Some(class::FILE_VARIABLE));
    assert!(e.message.contains("File variable `document`"), "{e}");
}

// --- list, move, delete ---

#[tokio::test]
async fn list_gives_names_kinds_sizes_and_times_filtered_by_glob() {
    let d = dirs();
    std::fs::create_dir(d.root.join("in")).expect("dir");
    std::fs::write(d.root.join("in/b.pdf"), "12345").expect("file");
    std::fs::write(d.root.join("in/a.pdf"), "1").expect("file");
    std::fs::write(d.root.join("in/c.txt"), "1").expect("file");
    std::fs::create_dir(d.root.join("in/sub.pdf")).expect("dir");
    let ep = endpoint(&d.root, "operation: list, path: in, glob: '*.pdf'");
    let out = call(&ep, json!({})).await.expect("lists");
    assert_eq!(out["count"], 3);
    let names: Vec<&str> = out["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["a.pdf", "b.pdf", "sub.pdf"]);
    assert_eq!(out["files"][1]["size"], 5);
    assert_eq!(out["files"][1]["kind"], "file");
    assert_eq!(out["files"][2]["kind"], "dir");
    let modified = out["files"][0]["modified"].as_str().expect("a time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(modified).is_ok(),
        "{modified}"
    );

    let whole = endpoint(&d.root, "operation: list");
    let out = call(&whole, json!({})).await.expect("lists the root");
    assert_eq!(
        out["files"],
        json!([{"name": "in", "kind": "dir", "size": out["files"][0]["size"], "modified": out["files"][0]["modified"]}])
    );

    let file = endpoint(&d.root, "operation: list, path: in/a.pdf");
    let e = call(&file, json!({})).await.expect_err("not a directory");
    assert_eq!(e.code.as_deref(), Some(class::INVALID_PATH), "{e}");
    let out_of_root = endpoint(&d.root, "operation: list, path: '..'");
    let e = call(&out_of_root, json!({})).await.expect_err("outside");
    assert_eq!(e.code.as_deref(), Some(class::PATH_OUTSIDE_ROOT), "{e}");
}

#[tokio::test]
async fn move_renames_and_never_replaces_unless_told() {
    let d = dirs();
    std::fs::write(d.root.join("a.txt"), "a").expect("file");
    std::fs::write(d.root.join("b.txt"), "b").expect("file");
    let ep = endpoint(
        &d.root,
        "operation: move, path: '{{ from }}', to: 'archive/{{ from }}'",
    );
    let out = call(&ep, json!({"from": "a.txt"})).await.expect("moves");
    assert_eq!(out, json!({"path": "archive/a.txt", "from": "a.txt"}));
    assert!(!d.root.join("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(d.root.join("archive/a.txt")).expect("moved"),
        "a"
    );

    let e = call(&ep, json!({"from": "a.txt"})).await.expect_err("gone");
    assert_eq!(e.code.as_deref(), Some(class::FILE_NOT_FOUND));
    assert!(e.message.contains("path `a.txt`"), "{e}");

    std::fs::write(d.root.join("archive/b.txt"), "old b").expect("file");
    let e = call(&ep, json!({"from": "b.txt"}))
        .await
        .expect_err("exists");
    assert_eq!(e.code.as_deref(), Some(class::FILE_EXISTS));
    assert!(e.message.contains("to `archive/b.txt`"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.root.join("b.txt")).expect("kept"),
        "b"
    );

    let out_of_root = endpoint(
        &d.root,
        "operation: move, path: b.txt, to: '../outside/b.txt'",
    );
    let e = call(&out_of_root, json!({})).await.expect_err("outside");
    assert_eq!(e.code.as_deref(), Some(class::PATH_OUTSIDE_ROOT));
    assert!(e.message.contains("to `../outside/b.txt`"), "{e}");
    assert!(d.root.join("b.txt").exists());
}

#[tokio::test]
async fn delete_removes_and_a_missing_file_is_an_error_or_ok_as_configured() {
    let d = dirs();
    std::fs::write(d.root.join("a.txt"), "a").expect("file");
    let ep = endpoint(&d.root, "operation: delete, path: a.txt");
    assert_eq!(
        call(&ep, json!({})).await.expect("deletes"),
        json!({"path": "a.txt", "deleted": true})
    );
    assert!(!d.root.join("a.txt").exists());
    let e = call(&ep, json!({})).await.expect_err("missing");
    assert_eq!(e.code.as_deref(), Some(class::FILE_NOT_FOUND));
    let lenient = endpoint(&d.root, "operation: delete, path: a.txt, missing: ok");
    assert_eq!(
        call(&lenient, json!({})).await.expect("ok"),
        json!({"path": "a.txt", "deleted": false})
    );
    std::fs::create_dir(d.root.join("dir")).expect("dir");
    let dir = endpoint(&d.root, "operation: delete, path: dir");
    let e = call(&dir, json!({})).await.expect_err("a directory");
    assert_eq!(e.code.as_deref(), Some(class::INVALID_PATH));
    assert!(d.root.join("dir").exists());
    // Deleting a symlink that points outside removes the link, never the target.
    symlink(d.outside.join("secret.txt"), d.root.join("link")).expect("symlink");
    let link = endpoint(&d.root, "operation: delete, path: link");
    call(&link, json!({})).await.expect("deletes the link");
    assert!(d.outside.join("secret.txt").exists());
}

// --- config ---

#[test]
fn validate_names_every_problem_with_its_key() {
    let d = dirs();
    let problems = config(
        &d.root,
        "operation: read, path: '{{ x', to: y, glob: '*', missing: ok, max_size: 0, \
         exists_error_code: 'A B'",
    )
    .validate();
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "path",
        "to",
        "glob",
        "missing",
        "max_size",
        "exists_error_code",
    ] {
        assert!(keys.contains(&key), "{key} in {problems:?}");
    }
    let to = problems.iter().find(|(k, _)| k == "to").expect("to");
    assert_eq!(to.1, "is used by `operation: move` only, not `read`");

    let write = config(&d.root, "operation: write, path: a").validate();
    assert_eq!(write.len(), 1, "{write:?}");
    assert!(
        write[0].1.contains("needs `content` (a value) or `file`"),
        "{write:?}"
    );
    let glob = config(&d.root, "operation: list, glob: '[a'").validate();
    assert_eq!(glob[0].0, "glob", "{glob:?}");
    assert!(config(&d.root, "operation: list").validate().is_empty());
}

#[test]
fn a_root_that_is_not_a_directory_is_named_by_validate_and_refused_at_build() {
    let d = dirs();
    let missing = d.root.join("nope");
    let c = config(&missing, "operation: list");
    assert!(
        c.validate().is_empty(),
        "the pure checks do not look at the disk"
    );
    let (key, message) = c.root_problem().expect("a problem");
    assert_eq!(key, "root");
    assert!(
        message.contains(&format!("`{}`", missing.display())),
        "{message}"
    );
    let e = FilesEndpoint::new("docs", &c).expect_err("refused");
    assert_eq!(e.code.as_deref(), Some(class::CONFIG));
    assert!(e.message.contains("nope"), "{e}");
    let file = d.outside.join("secret.txt");
    assert!(config(&file, "operation: list").root_problem().is_some());
}

#[test]
fn unknown_keys_are_refused() {
    let text = "{type: files, root: /tmp, operation: read, path: a, encoding: utf8}";
    let e = serde_yaml::from_str::<EndpointConfig>(text).expect_err("unknown key");
    assert!(e.to_string().contains("encoding"), "{e}");
    let text = "{type: files, root: /tmp, operation: copy, path: a}";
    assert!(serde_yaml::from_str::<EndpointConfig>(text).is_err());
}

#[tokio::test]
async fn the_probe_fails_once_the_root_is_gone() {
    let d = dirs();
    let ep = endpoint(&d.root, "operation: list");
    ep.probe().await.expect("a listable root");
    std::fs::remove_dir(&d.root).expect("root removed");
    let e = ep.probe().await.expect_err("the root is gone");
    assert!(matches!(e.kind, ErrorKind::Transient { .. }), "{e}");
    assert_eq!(e.code.as_deref(), Some(class::IO));
}

#[tokio::test]
async fn a_cancelled_task_does_not_write() {
    let d = dirs();
    let ep = endpoint(&d.root, "operation: write, path: a.txt, content: x");
    let req = request(json!({}));
    req.cancel.cancel();
    let e = ep.call(&req).await.expect_err("cancelled");
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(!d.root.join("a.txt").exists());
}

/// A file "missing" because the root itself was removed is an I/O failure of the root, not the
/// BPMN error FILE_NOT_FOUND a process would take as an answer about the file.
#[tokio::test]
async fn a_removed_root_is_not_a_missing_file() {
    let d = dirs();
    let ep = endpoint(&d.root, "operation: read, path: a.txt");
    std::fs::remove_dir(&d.root).expect("root removed");
    let e = call(&ep, json!({})).await.expect_err("no root");
    assert!(matches!(e.kind, ErrorKind::Transient { .. }), "{e}");
    assert_eq!(e.code.as_deref(), Some(class::IO));
    assert!(e.message.contains("cannot be found any more"), "{e}");
}
