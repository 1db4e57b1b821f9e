//! Request targets as curl users type them. CouchDB answers `GET /db/_all_docs?key="k"` and
//! `?startkey={"a":1}` with the quotes and braces raw, and its documentation shows such URLs;
//! hyper refuses them (an empty 400) because a URI may not hold those bytes. This wrapper
//! percent-encodes them in each request line before hyper reads it, so the query decodes to
//! exactly what was typed. It follows the HTTP/1.1 framing to find each request line: header
//! lines pass as they are, a body of `Content-Length` bytes passes untouched, and after a
//! chunked body it stops rewriting for the rest of the connection (hyper then judges any
//! later line as it would anyway). Nothing but request targets is ever changed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A request line or header line longer than this is passed on unread (hyper refuses it).
const MAX_LINE: usize = 64 * 1024;

/// Where the reader is in the byte stream of one connection.
#[derive(Debug)]
enum State {
    /// Reading a request line (bytes held until its end).
    RequestLine(Vec<u8>),
    /// In the header lines: the current line so far, what it has learnt of the body.
    Headers {
        line: Vec<u8>,
        length: u64,
        chunked: bool,
    },
    /// Inside a body of known length: this many bytes still to pass.
    Body(u64),
    /// Everything passes as it is.
    Through,
}

/// The pure part: turns the bytes read into the bytes hyper should see.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::RequestLine(Vec::new()),
        }
    }
}

/// Whether a byte may stand in a request target as it is.
fn allowed(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// The request line with its target percent-encoded where hyper would refuse it.
fn rewrite_line(line: &[u8], out: &mut Vec<u8>) {
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    let (Some(first), Some(last)) = (first, last) else {
        out.extend_from_slice(line);
        return;
    };
    if last <= first {
        out.extend_from_slice(line);
        return;
    }
    out.extend_from_slice(&line[..=first]);
    for &b in &line[first + 1..last] {
        if allowed(b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(&line[last..]);
}

impl Rewriter {
    /// Takes bytes as they arrive and appends what to hand on.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Through => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Body(left) => {
                    let n = (*left).min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::RequestLine(Vec::new());
                    }
                }
                State::RequestLine(line) => match input.iter().position(|&b| b == b'\n') {
                    None => {
                        line.extend_from_slice(input);
                        if line.len() > MAX_LINE {
                            out.append(line);
                            self.state = State::Through;
                        }
                        return;
                    }
                    Some(i) => {
                        line.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        let line = std::mem::take(line);
                        // Blank lines between requests are allowed before a request line.
                        if line == b"\r\n" || line == b"\n" {
                            out.extend_from_slice(&line);
                            continue;
                        }
                        rewrite_line(&line, out);
                        self.state = State::Headers {
                            line: Vec::new(),
                            length: 0,
                            chunked: false,
                        };
                    }
                },
                State::Headers {
                    line,
                    length,
                    chunked,
                } => match input.iter().position(|&b| b == b'\n') {
                    None => {
                        out.extend_from_slice(input);
                        line.extend_from_slice(input);
                        if line.len() > MAX_LINE {
                            self.state = State::Through;
                        }
                        return;
                    }
                    Some(i) => {
                        out.extend_from_slice(&input[..=i]);
                        line.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        let text = String::from_utf8_lossy(line).to_ascii_lowercase();
                        line.clear();
                        let text = text.trim();
                        if text.is_empty() {
                            self.state = if *chunked {
                                State::Through
                            } else if *length > 0 {
                                State::Body(*length)
                            } else {
                                State::RequestLine(Vec::new())
                            };
                        } else if let Some(v) = text.strip_prefix("content-length:") {
                            match v.trim().parse() {
                                Ok(n) => *length = n,
                                // hyper refuses it; nothing after it is ours to judge.
                                Err(_) => *chunked = true,
                            }
                        } else if text.starts_with("transfer-encoding:") {
                            *chunked = true;
                        }
                    }
                },
            }
        }
    }
}

/// A connection whose request targets are made acceptable to hyper (see the module).
pub struct Lenient<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet handed to the reader.
    ready: Vec<u8>,
    at: usize,
}

impl<S> Lenient<S> {
    pub fn new(inner: S) -> Lenient<S> {
        Lenient {
            inner,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lenient<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.at < me.ready.len() {
                let n = (me.ready.len() - me.at).min(buf.remaining());
                buf.put_slice(&me.ready[me.at..me.at + n]);
                me.at += n;
                if me.at == me.ready.len() {
                    me.ready.clear();
                    me.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    me.rewriter.feed(rb.filled(), &mut me.ready);
                    // A request line not yet complete gives nothing yet: read on.
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lenient<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes.
    fn run(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            r.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn targets_are_encoded_and_nothing_else_is_touched_whatever_the_read_sizes() {
        let input = b"GET /db/_all_docs?key=\"k\"&startkey={\"a\":1} HTTP/1.1\r\nHost: x\r\nX-Q: \"kept\"\r\n\r\n\
POST /db/_bulk_docs?x=\"1\" HTTP/1.1\r\nContent-Length: 25\r\n\r\n{\"docs\":[{\"_id\":\"a b\"}]}\n\
GET /db/\"after\" HTTP/1.1\r\n\r\n";
        let want = b"GET /db/_all_docs?key=%22k%22&startkey=%7B%22a%22:1%7D HTTP/1.1\r\nHost: x\r\nX-Q: \"kept\"\r\n\r\n\
POST /db/_bulk_docs?x=%221%22 HTTP/1.1\r\nContent-Length: 25\r\n\r\n{\"docs\":[{\"_id\":\"a b\"}]}\n\
GET /db/%22after%22 HTTP/1.1\r\n\r\n";
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                String::from_utf8_lossy(&run(input, step)),
                String::from_utf8_lossy(want),
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn after_a_chunked_body_everything_passes_as_it_is() {
        let input = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"}\r\n0\r\n\r\nGET /\"x\" HTTP/1.1\r\n\r\n";
        assert_eq!(run(input, 5), input.to_vec());
    }

    #[test]
    fn valid_targets_and_utf8_are_left_or_encoded_as_hyper_needs() {
        assert_eq!(
            run(b"GET /db/%22k%22 HTTP/1.1\r\n\r\n", 4),
            b"GET /db/%22k%22 HTTP/1.1\r\n\r\n"
        );
        assert_eq!(
            run("GET /db/é HTTP/1.1\r\n\r\n".as_bytes(), 4),
            b"GET /db/%C3%A9 HTTP/1.1\r\n\r\n"
        );
    }
}
