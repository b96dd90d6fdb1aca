//! A tiny blocking HTTP/1.1 client over one keep-alive TCP connection, for tests that need
//! the raw protocol (status codes, headers, chunked watch streams).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

pub struct Conn {
    reader: BufReader<TcpStream>,
    token: Option<String>,
}

pub struct Answer {
    pub code: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Value,
}

impl Conn {
    /// Opens a connection whose requests carry `token` as a bearer token.
    pub fn open(addr: SocketAddr, token: Option<&str>) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
            token: token.map(str::to_string),
        }
    }

    pub fn send(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) {
        self.send_with(method, path, content_type, "application/json", body);
    }

    pub fn send_with(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Accept: {accept}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
    }

    pub fn head(&mut self) -> (u16, BTreeMap<String, Vec<String>>) {
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {status:?}"))
            .parse()
            .unwrap();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_insert_with(Vec::new)
                .push(v.trim().to_string());
        }
        (code, headers)
    }

    pub fn request(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        self.send(method, path, content_type, body);
        self.answer()
    }

    /// A body-less request with its own Accept header.
    pub fn request_accept(&mut self, method: &str, path: &str, accept: &str) -> Answer {
        self.send_with(method, path, "application/json", accept, b"");
        self.answer()
    }

    /// Sends a request and reads the answer; None when the server closed the connection
    /// without answering.
    pub fn request_or_eof(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Option<Answer> {
        self.send(method, path, content_type, body);
        let buf = self
            .reader
            .fill_buf()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        if buf.is_empty() {
            return None;
        }
        Some(self.answer())
    }

    fn answer(&mut self) -> Answer {
        let (code, headers) = self.head();
        let len: usize = headers["content-length"][0].parse().unwrap();
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf).unwrap();
        let body = if buf.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&buf).unwrap()
        };
        Answer {
            code,
            headers,
            body,
        }
    }

    /// The next chunk of a chunked response; None at its end.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).unwrap();
        buf.truncate(n);
        if n == 0 { None } else { Some(buf) }
    }

    /// Reads watch events until `count` are collected or the stream ends.
    pub fn events(&mut self, count: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        while out.len() < count {
            let Some(chunk) = self.chunk() else { break };
            pending.extend(chunk);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                out.push(serde_json::from_slice(&line).unwrap());
            }
        }
        out
    }
}
