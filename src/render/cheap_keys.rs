//! The chart of a canary render, with cheap keys.
//!
//! A canary render ([`super::provenance`]) is compared with the real one only to find the
//! fields that change with the sensitive inputs. Key material a chart generates differs
//! between any two renders whatever its type, so it is found (and marked) all the same when
//! the canary render generates a cheaper kind of key. RSA keys are what makes such charts slow
//! to render: `genCA`, `genSelfSignedCert` and `genSignedCert` each generate a 2048-bit RSA key
//! (tens to hundreds of milliseconds), where an ECDSA P-256 key takes well under one.
//!
//! [`cheap_copy`] copies a chart (a directory or a packaged chart) and rewrites, in the template actions of
//! the files under its `templates/` folders (its subcharts' too):
//!
//! - `genCA A B` → `genCAWithKey A B (genPrivateKey "ecdsa")`, and likewise
//!   `genSelfSignedCert` and `genSignedCert` (sprig's `...WithKey` forms take the key last);
//! - `genPrivateKey ANY` → `genPrivateKey "ecdsa"`.
//!
//! Everything else (text, comments, string literals, fields and variables of the same names)
//! is kept byte for byte. Packaged subcharts are copied as they are. When helm refuses the copy
//! (a template that checks the key type, a call written as the end of a pipeline), the canary
//! render runs with the chart itself.

use std::io;
use std::path::{Path, PathBuf};

/// The generating functions that take their key last in a `...WithKey` form.
const WITH_KEY: &[(&str, &str)] = &[
    ("genCA", "genCAWithKey"),
    ("genSelfSignedCert", "genSelfSignedCertWithKey"),
    ("genSignedCert", "genSignedCertWithKey"),
];

/// The cheap key every rewritten call generates.
const CHEAP_KEY: &str = "(genPrivateKey \"ecdsa\")";

/// Copies the chart at `chart` (a directory, or a packaged chart: `.tgz`) into the (existing,
/// empty) directory `into`, rewriting the key-generating calls of its templates (see the
/// module). Returns the copy's chart directory, or None when no call was rewritten: the copy
/// would render exactly as the chart and is of no use.
pub fn cheap_copy(chart: &Path, into: &Path) -> io::Result<Option<PathBuf>> {
    if std::fs::metadata(chart)?.is_dir() {
        let name = chart.file_name().unwrap_or(std::ffi::OsStr::new("chart"));
        let copy = into.join(name);
        std::fs::create_dir(&copy)?;
        return Ok(copy_dir(chart, &copy, false)?.then_some(copy));
    }
    // A packaged chart: its single top folder is the chart.
    let unpacked = into.join("packaged");
    let archive = std::fs::File::open(chart)?;
    tar::Archive::new(flate2::read::GzDecoder::new(archive)).unpack(&unpacked)?;
    let mut tops = std::fs::read_dir(&unpacked)?.collect::<Result<Vec<_>, _>>()?;
    let top = match tops.pop() {
        Some(top) if tops.is_empty() && top.file_type()?.is_dir() => top,
        _ => return Ok(None),
    };
    let copy = into.join(top.file_name());
    std::fs::create_dir(&copy)?;
    let rewritten = copy_dir(&top.path(), &copy, false)?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(rewritten.then_some(copy))
}

/// How deep folders are copied: deeper is a link that leads back up (the copy is then not
/// made, and the canary render runs with the chart itself).
const MAX_DEPTH: usize = 32;

fn copy_dir(from: &Path, to: &Path, in_templates: bool) -> io::Result<bool> {
    copy_dir_at(from, to, in_templates, 0)
}

fn copy_dir_at(from: &Path, to: &Path, in_templates: bool, depth: usize) -> io::Result<bool> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} is more than {MAX_DEPTH} folders deep (a link to a folder above it?)",
            from.display()
        )));
    }
    let mut rewritten = false;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        // Followed like helm follows them: a linked folder or file is copied as its target.
        if std::fs::metadata(&source)?.is_dir() {
            std::fs::create_dir(&target)?;
            let templates = in_templates || entry.file_name() == "templates";
            rewritten |= copy_dir_at(&source, &target, templates, depth + 1)?;
            continue;
        }
        let bytes = std::fs::read(&source)?;
        let cheap = in_templates
            .then(|| std::str::from_utf8(&bytes).ok().and_then(rewrite))
            .flatten();
        match cheap {
            Some(text) => {
                std::fs::write(&target, text)?;
                rewritten = true;
            }
            None => std::fs::write(&target, &bytes)?,
        }
    }
    Ok(rewritten)
}

/// `text` with the key-generating calls of its template actions rewritten (see the module);
/// None when it holds none.
pub fn rewrite(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(len) = after.find("}}") else {
            break;
        };
        let action = &after[..len];
        out.push_str(&rest[..open + 2]);
        let body = action.trim_start_matches('-').trim_start();
        match (!body.starts_with("/*"))
            .then(|| rewrite_action(action))
            .flatten()
        {
            Some(new) => {
                out.push_str(&new);
                changed = true;
            }
            None => out.push_str(action),
        }
        out.push_str("}}");
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// One edit of an action: the bytes `start..end` replaced by `text`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// The text between `{{` and `}}`, rewritten; None when it calls no key-generating function.
fn rewrite_action(action: &str) -> Option<String> {
    let bytes = action.as_bytes();
    // A closing trim marker (` -}}`) is not part of the last command.
    let limit = match action.strip_suffix('-') {
        Some(before) if before.ends_with(|c: char| c.is_ascii_whitespace()) => before.len(),
        _ => action.len(),
    };
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut edits = Vec::new();
    let mut i = 0;
    while i < limit {
        if let Some(next) = skip_literal(bytes, i) {
            i = next;
            continue;
        }
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < limit && is_ident(bytes[i]) {
            i += 1;
        }
        let before = start.checked_sub(1).map(|j| bytes[j]);
        if matches!(before, Some(b'.' | b'$')) || bytes[start].is_ascii_digit() {
            continue;
        }
        // A name followed by `.` is not a call of the function (a field chain), nor is one
        // followed by anything but its arguments.
        if i < limit && !matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        let word = &action[start..i];
        let end = trim_end(bytes, start, command_end(bytes, i, limit));
        if let Some((_, with_key)) = WITH_KEY.iter().find(|(f, _)| *f == word) {
            edits.push(Edit {
                start,
                end: i,
                text: (*with_key).to_owned(),
            });
            edits.push(Edit {
                start: end,
                end,
                text: format!(" {CHEAP_KEY}"),
            });
        } else if word == "genPrivateKey" && end > i {
            edits.push(Edit {
                start: i,
                end,
                text: " \"ecdsa\"".to_owned(),
            });
            // Its argument is replaced whole: nothing in it is rewritten.
            i = end;
        }
    }
    if edits.is_empty() {
        return None;
    }
    // Nested calls are parenthesized, so an inner call ends before the outer one: sorting by
    // position keeps each key with its own call.
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(action.len() + 32 * edits.len());
    let mut at = 0;
    for edit in edits {
        out.push_str(&action[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&action[at..]);
    Some(out)
}

/// Where a string, raw string or character literal starting at `i` ends (one past its closing
/// quote); None when none starts there.
fn skip_literal(bytes: &[u8], i: usize) -> Option<usize> {
    let quote @ (b'"' | b'`' | b'\'') = bytes[i] else {
        return None;
    };
    let mut j = i + 1;
    while j < bytes.len() && bytes[j] != quote {
        j += if bytes[j] == b'\\' && quote != b'`' {
            2
        } else {
            1
        };
    }
    Some((j + 1).min(bytes.len()))
}

/// The end of the command whose arguments start at `from`: the next `|` or unmatched `)` at
/// its own depth, or `limit`.
fn command_end(bytes: &[u8], from: usize, limit: usize) -> usize {
    let mut depth = 0usize;
    let mut j = from;
    while j < limit {
        if let Some(next) = skip_literal(bytes, j) {
            j = next;
            continue;
        }
        match bytes[j] {
            b'(' => depth += 1,
            b')' if depth == 0 => return j,
            b')' => depth -= 1,
            b'|' if depth == 0 => return j,
            _ => {}
        }
        j += 1;
    }
    limit.min(bytes.len())
}

/// `end` moved back over whitespace, not before `start`.
fn trim_end(bytes: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_generating_calls_take_a_cheap_key() {
        assert_eq!(
            rewrite("{{- $ca := genCA (printf \"%s-ca\" .host) 365 -}}").as_deref(),
            Some(
                "{{- $ca := genCAWithKey (printf \"%s-ca\" .host) 365 (genPrivateKey \"ecdsa\") -}}"
            )
        );
        assert_eq!(
            rewrite("{{ $c := genSignedCert .host nil (list .host) 365 $ca }}").as_deref(),
            Some(
                "{{ $c := genSignedCertWithKey .host nil (list .host) 365 $ca (genPrivateKey \"ecdsa\") }}"
            )
        );
        assert_eq!(
            rewrite("x: {{ (genSelfSignedCert \"a\" nil nil 10).Cert | b64enc }}").as_deref(),
            Some(
                "x: {{ (genSelfSignedCertWithKey \"a\" nil nil 10 (genPrivateKey \"ecdsa\")).Cert | b64enc }}"
            )
        );
        assert_eq!(
            rewrite("k: {{ genPrivateKey \"rsa\" | b64enc }} d: {{genPrivateKey .Values.type}}")
                .as_deref(),
            Some("k: {{ genPrivateKey \"ecdsa\" | b64enc }} d: {{genPrivateKey \"ecdsa\"}}")
        );
        // Nested: each call keeps its own key.
        assert_eq!(
            rewrite("{{ genSignedCert \"a\" nil nil 1 (genCA \"b\" 1) }}").as_deref(),
            Some(
                "{{ genSignedCertWithKey \"a\" nil nil 1 (genCAWithKey \"b\" 1 (genPrivateKey \"ecdsa\")) (genPrivateKey \"ecdsa\") }}"
            )
        );
        // A key passed in already is made cheap as well.
        assert_eq!(
            rewrite("{{ genCAWithKey \"a\" 1 (genPrivateKey \"rsa\") }}").as_deref(),
            Some("{{ genCAWithKey \"a\" 1 (genPrivateKey \"ecdsa\") }}")
        );
    }

    #[test]
    fn text_comments_strings_fields_and_variables_are_kept() {
        for text in [
            "genCA is mentioned in text {{ .Values.genCA }} {{ $genCA }}",
            "{{/* genCA \"x\" 365 */}} {{- /* genPrivateKey */ -}}",
            "{{ printf \"genCA %s\" `genSignedCert` }} {{ include \"genCA\" . }}",
            "{{ .Values.certs.genCA.enabled }} {{ genCAx 1 }}",
            "no actions at all",
        ] {
            assert_eq!(rewrite(text), None, "{text}");
        }
        // Only the calls change; the rest of the file is byte for byte the same.
        let text = "a: {{ .Values.a | quote }}\n{{- $ca := genCA \"x\" 1 }}\nb: \"{{ `}` }}\"\n";
        assert_eq!(
            rewrite(text).as_deref(),
            Some(
                "a: {{ .Values.a | quote }}\n{{- $ca := genCAWithKey \"x\" 1 (genPrivateKey \"ecdsa\") }}\nb: \"{{ `}` }}\"\n"
            )
        );
    }

    #[test]
    fn only_the_templates_of_a_chart_are_rewritten() {
        let chart = tempfile::tempdir().unwrap();
        let root = chart.path();
        std::fs::create_dir_all(root.join("templates")).unwrap();
        std::fs::create_dir_all(root.join("charts/sub/templates")).unwrap();
        std::fs::create_dir_all(root.join("files")).unwrap();
        let call = "{{ genCA \"x\" 1 }}";
        std::fs::write(root.join("Chart.yaml"), "name: c\nversion: 1.0.0\n").unwrap();
        std::fs::write(root.join("templates/a.yaml"), call).unwrap();
        std::fs::write(root.join("charts/sub/templates/_h.tpl"), call).unwrap();
        std::fs::write(root.join("files/raw.txt"), call).unwrap();
        std::fs::write(root.join("templates/blob.bin"), [0xff, 0xfe, b'{']).unwrap();

        let into = tempfile::tempdir().unwrap();
        let copy = cheap_copy(root, into.path()).unwrap().unwrap();
        assert_eq!(copy, into.path().join(root.file_name().unwrap()));
        let read = |p: &str| std::fs::read(copy.join(p)).unwrap();
        let cheap = b"{{ genCAWithKey \"x\" 1 (genPrivateKey \"ecdsa\") }}".to_vec();
        assert_eq!(read("templates/a.yaml"), cheap);
        assert_eq!(read("charts/sub/templates/_h.tpl"), cheap);
        assert_eq!(read("files/raw.txt"), call.as_bytes());
        assert_eq!(read("Chart.yaml"), b"name: c\nversion: 1.0.0\n");
        assert_eq!(read("templates/blob.bin"), [0xff, 0xfe, b'{']);

        // A chart that generates no key: nothing to gain from the copy.
        std::fs::write(root.join("templates/a.yaml"), "{{ randAlphaNum 8 }}").unwrap();
        std::fs::write(root.join("charts/sub/templates/_h.tpl"), "").unwrap();
        let again = tempfile::tempdir().unwrap();
        assert_eq!(cheap_copy(root, again.path()).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_linked_to_its_parent_is_refused_not_followed_forever() {
        let chart = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(chart.path().join("templates")).unwrap();
        std::fs::write(chart.path().join("templates/a.yaml"), "{{ genCA \"x\" 1 }}").unwrap();
        std::os::unix::fs::symlink(chart.path(), chart.path().join("templates/loop")).unwrap();
        let into = tempfile::tempdir().unwrap();
        let err = cheap_copy(chart.path(), into.path()).unwrap_err();
        assert!(err.to_string().contains("folders deep"), "{err}");
    }

    #[test]
    fn a_packaged_chart_is_unpacked_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("c-1.0.0.tgz");
        let packaged = crate::render::chart_info::tests::archive(&[
            ("c/Chart.yaml", "name: c\nversion: 1.0.0\n"),
            (
                "c/templates/a.yaml",
                "{{ genSelfSignedCert \"x\" nil nil 1 }}",
            ),
        ]);
        std::fs::write(&archive, packaged).unwrap();

        let into = tempfile::tempdir().unwrap();
        let copy = cheap_copy(&archive, into.path()).unwrap().unwrap();
        assert_eq!(copy, into.path().join("c"));
        assert_eq!(
            std::fs::read_to_string(copy.join("templates/a.yaml")).unwrap(),
            "{{ genSelfSignedCertWithKey \"x\" nil nil 1 (genPrivateKey \"ecdsa\") }}"
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("Chart.yaml")).unwrap(),
            "name: c\nversion: 1.0.0\n"
        );
        // Only the copy is left in the folder.
        let names: Vec<_> = std::fs::read_dir(into.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c"]);
    }
}
