//! Test support: the real SMTP server `tests/support/smtp_sink.py` as a child process, and a
//! small reader for the raw messages it stores (headers, MIME parts, transfer encodings).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `smtp_sink.py`; killed when dropped.
pub struct Sink {
    _child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One message the sink accepted.
#[derive(Debug)]
pub struct Received {
    /// The raw message, as the client sent it.
    pub message: Part,
    /// Envelope recipients (RCPT TO), Bcc included.
    pub rcpt_tos: Vec<String>,
    /// Envelope sender.
    pub mail_from: String,
    /// The user that authenticated, if any.
    pub login: Option<String>,
}

impl Sink {
    /// Starts the sink on a free loopback port; with `auth` (`user:password`) AUTH is required.
    /// Without aiosmtpd the script installs it into a venv under target/ first.
    pub async fn start(auth: Option<&str>) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .args(["--port", "0", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(auth) = auth {
            command.args(["--auth", auth]);
        }
        let mut child = command.spawn().expect("smtp_sink.py starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(180),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("smtp_sink.py says where it listens within 20s")
        .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from smtp_sink.py: {line:?}"));
        Sink {
            _child: child,
            port,
            dir,
        }
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let base = self.dir.path().join(n.to_string());
            let Ok(sidecar) = std::fs::read_to_string(base.with_extension("json")) else {
                break;
            };
            let sidecar: Value = serde_json::from_str(&sidecar).unwrap();
            let raw = std::fs::read(base.with_extension("eml")).unwrap();
            out.push(Received {
                message: Part::parse(&String::from_utf8(raw).expect("7-bit clean message")),
                rcpt_tos: serde_json::from_value(sidecar["rcpt_tos"].clone()).unwrap(),
                mail_from: sidecar["mail_from"].as_str().unwrap().to_string(),
                login: sidecar["login"].as_str().map(str::to_string),
            });
        }
        out
    }
}

/// A message or one MIME part of it: unfolded headers and the raw body.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub head: String,
    pub body: String,
}

impl Part {
    /// Splits at the first empty line; unfolds continuation lines.
    pub fn parse(raw: &str) -> Part {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().expect("continuation after a header");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Part {
            headers,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type, lowercased, without parameters.
    pub fn mime(&self) -> String {
        self.header("Content-Type")
            .unwrap_or("text/plain")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_ascii_lowercase()
    }

    /// The parts of a multipart body.
    pub fn parts(&self) -> Vec<Part> {
        let content_type = self.header("Content-Type").expect("a Content-Type");
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .expect("a boundary")
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        let mut parts = Vec::new();
        for chunk in self.body.split(&delimiter).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            parts.push(Part::parse(chunk.trim_start_matches('\n')));
        }
        parts
    }

    /// The body with its Content-Transfer-Encoding undone.
    pub fn decoded(&self) -> Vec<u8> {
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                let compact: String = self.body.split_whitespace().collect();
                BASE64_STANDARD.decode(compact).expect("valid base64")
            }
            "quoted-printable" => quoted_printable(&self.body),
            _ => self.body.trim_end_matches('\n').as_bytes().to_vec(),
        }
    }

    /// The decoded body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.decoded()).expect("UTF-8 text")
    }
}

/// Undoes quoted-printable: `=XX` escapes and `=` soft line breaks.
fn quoted_printable(body: &str) -> Vec<u8> {
    let bytes = body.trim_end_matches('\n').as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
