//! Protocol detection for the bytes a client sends after CONNECT, and the rewinding
//! stream that hands those bytes back to whoever serves the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What a client is speaking inside a CONNECT tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS handshake record: terminate TLS.
    Tls,
    /// An HTTP/1 request line (or the HTTP/2 preface): serve as HTTP.
    Http,
    /// Something else: pass it through as a blind tunnel.
    Other,
    /// The client sent nothing within the sniff timeout (server-speaks-first protocols).
    Silence,
    /// The client closed the tunnel without sending anything.
    Closed,
}

/// Longest method token accepted as HTTP.
const MAX_METHOD_LEN: usize = 20;

/// Classifies the first bytes of a tunnel; `None` when more bytes are needed.
pub fn detect(prefix: &[u8]) -> Option<Sniffed> {
    let first = *prefix.first()?;
    if first == 0x16 {
        // TLS record header: content type 22 (handshake), version major 3.
        return match prefix.get(1) {
            None => None,
            Some(3) => Some(Sniffed::Tls),
            Some(_) => Some(Sniffed::Other),
        };
    }
    // Decided by the byte after the method at the latest (index MAX_METHOD_LEN), so the
    // verdict does not depend on how the bytes were split into reads.
    for (i, &b) in prefix.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD_LEN => continue,
            b' ' if i > 0 => return Some(Sniffed::Http),
            _ => return Some(Sniffed::Other),
        }
    }
    None
}

/// Reads from `io` until [`detect`] decides, the client goes quiet for `timeout`, or it
/// closes. Returns the verdict and every byte read, to be replayed with [`Rewind`].
pub async fn sniff<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> io::Result<(Sniffed, Bytes)> {
    let mut buf = BytesMut::with_capacity(1024);
    let verdict = sniff_into(io, timeout, &mut buf).await?;
    Ok((verdict, buf.freeze()))
}

/// [`sniff`] reading into `buf`, which may hold bytes read before; cancelled, it leaves
/// every byte read in `buf`.
pub async fn sniff_into<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
    buf: &mut BytesMut,
) -> io::Result<Sniffed> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Err(_) if buf.is_empty() => return Ok(Sniffed::Silence),
            Err(_) => return Ok(Sniffed::Other),
            Ok(Ok(0)) if buf.is_empty() => return Ok(Sniffed::Closed),
            Ok(Ok(0)) => return Ok(detect(buf).unwrap_or(Sniffed::Other)),
            Ok(Ok(_)) => {
                if let Some(verdict) = detect(buf) {
                    return Ok(verdict);
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Bytes of a TLS record's header: content type, version, length.
const RECORD_HEADER: usize = 5;

/// The server name (SNI) of the TLS ClientHello that `buf` begins with, reading the rest
/// of its first record from `io` into `buf` when it is not all there yet (within
/// `timeout`; every byte read stays in `buf`); `None` when the hello names no server or
/// cannot be read whole.
pub async fn client_hello_name<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let record_end =
        |buf: &BytesMut| RECORD_HEADER + usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    while buf.len() < RECORD_HEADER || buf.len() < record_end(buf) {
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(1..)) => {}
            _ => return None,
        }
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = &buf[..];
    while !rest.is_empty() {
        acceptor.read_tls(&mut rest).ok()?;
        if let Some(accepted) = acceptor.accept().ok()? {
            return accepted.client_hello().server_name().map(str::to_owned);
        }
    }
    None
}

/// A stream that first replays bytes already read from it.
#[derive(Debug)]
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    /// Replays `prefix`, then reads from `inner`.
    pub fn new(prefix: Bytes, inner: I) -> Self {
        Rewind { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The first bytes a TLS client naming `name` sends.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        hello
    }

    #[tokio::test]
    async fn a_client_hellos_name_is_read_also_when_it_arrives_in_pieces() {
        let hello = client_hello("api.kinvey.com");
        for split in [hello.len(), 200, 5, 2] {
            let mut buf = BytesMut::from(&hello[..split]);
            let mut rest = &hello[split..];
            let name = client_hello_name(&mut rest, &mut buf, Duration::from_secs(1)).await;
            assert_eq!(name.as_deref(), Some("api.kinvey.com"), "split at {split}");
            assert_eq!(buf[..], hello[..], "every byte read is kept");
        }
        // Cut short (the client stops sending), or not a hello: no name.
        let mut cut = &hello[100..hello.len() - 1];
        let mut buf = BytesMut::from(&hello[..100]);
        assert_eq!(
            client_hello_name(&mut cut, &mut buf, Duration::from_secs(1)).await,
            None
        );
        let mut junk = BytesMut::from(&[0x16, 3, 1, 0, 4, 1, 2, 3, 4][..]);
        assert_eq!(
            client_hello_name(&mut &b""[..], &mut junk, Duration::from_secs(1)).await,
            None
        );
    }

    #[test]
    fn detects_tls_http_and_other() {
        assert_eq!(detect(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some(Sniffed::Tls));
        assert_eq!(detect(&[0x16]), None);
        assert_eq!(detect(&[0x16, 0x10]), Some(Sniffed::Other));
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n"), Some(Sniffed::Http));
        assert_eq!(detect(b"M-SEARCH * HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(detect(b"POS"), None);
        assert_eq!(detect(b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Sniffed::Other));
        assert_eq!(detect(b"get / HTTP/1.1"), Some(Sniffed::Other));
        assert_eq!(detect(b" GET"), Some(Sniffed::Other));
        assert_eq!(detect(&[0u8; 4]), Some(Sniffed::Other));
        assert_eq!(detect(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"), Some(Sniffed::Other));
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn a_longest_method_waits_for_the_byte_after_it() {
        // Found by fuzzing: 20 letters were judged Other before the space arrived, so a
        // request split after its method was tunnelled blind.
        let request = b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n";
        assert_eq!(detect(&request[..MAX_METHOD_LEN]), None);
        assert_eq!(detect(request), Some(Sniffed::Http));
        assert_eq!(detect(b"ABCDEFGHIJKLMNOPQRSTU"), Some(Sniffed::Other));
    }

    #[tokio::test]
    async fn sniff_reports_silence_and_close() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let (verdict, bytes) = sniff(&mut server, Duration::from_millis(50)).await.unwrap();
        assert_eq!(verdict, Sniffed::Silence);
        assert!(bytes.is_empty());
        client.shutdown().await.unwrap();
        drop(client);
        let (verdict, _) = sniff(&mut server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(verdict, Sniffed::Closed);
    }

    #[tokio::test]
    async fn sniffed_bytes_are_replayed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (verdict, prefix) = sniff(&mut server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(verdict, Sniffed::Http);
        client.write_all(b"Host: x\r\n").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        Rewind::new(prefix, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: x\r\n");
    }
}
