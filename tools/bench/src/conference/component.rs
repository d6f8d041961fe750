//! A minimal XEP-0114 external component stream (`focus.<domain>`). tokio-xmpp cannot do it
//! against Prosody: its stream reader requires `version='1.0'` in the server's header, which a
//! component stream does not carry, and its stanza types are `jabber:client` unless
//! xmpp-parsers' `component` feature is on (which would rebuild it for the whole workspace).
//! So: rxml's event reader and minidom's tree builder, one element per stanza.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_xmpp::minidom::rxml::{AsyncRawReader, RawEvent};
use tokio_xmpp::minidom::tree_builder::TreeBuilder;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;

use super::stanzas::{esc, NS_COMPONENT};

pub struct ComponentStream {
    reader: AsyncRawReader<BufReader<OwnedReadHalf>>,
    tree: TreeBuilder,
    writer: OwnedWriteHalf,
}

impl ComponentStream {
    /// Connects to `addr` as component `jid` and completes the handshake with `secret`.
    pub async fn connect(addr: SocketAddr, jid: &str, secret: &str) -> Result<ComponentStream> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .context("connecting the component")??;
        tcp.set_nodelay(true)?;
        let (read, writer) = tcp.into_split();
        let mut stream = ComponentStream {
            reader: AsyncRawReader::new(BufReader::new(read)),
            tree: TreeBuilder::new(),
            writer,
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
            esc(jid)
        );
        stream.writer.write_all(header.as_bytes()).await?;
        let handshake = async {
            // The server's header: its id keys the handshake.
            while stream.tree.depth() == 0 {
                let event = stream.reader.read().await?.context("stream closed")?;
                stream.tree.process_event(event)?;
            }
            let id = stream
                .tree
                .top()
                .and_then(|s| s.attr("id"))
                .context("component stream header without id")?
                .to_owned();
            let digest = Handshake::from_stream_id_and_password(id, secret)
                .data
                .context("no digest")?;
            let mut hex = String::with_capacity(40);
            for b in digest {
                let _ = write!(hex, "{b:02x}");
            }
            stream
                .writer
                .write_all(format!("<handshake>{hex}</handshake>").as_bytes())
                .await?;
            match stream.next().await? {
                Some(el) if el.name() == "handshake" => Ok(()),
                Some(el) => Err(anyhow!("component refused: {el:?}")),
                None => bail!("stream closed at the handshake"),
            }
        };
        tokio::time::timeout(Duration::from_secs(5), handshake)
            .await
            .context("component handshake timed out")??;
        Ok(stream)
    }

    /// The next top-level element; `None` at the end of the stream. Cancel-safe: the parser's
    /// state lives in `self` between events.
    pub async fn next(&mut self) -> Result<Option<Element>> {
        loop {
            let Some(event) = self.reader.read().await? else {
                return Ok(None);
            };
            let foot = matches!(event, RawEvent::ElementFoot(_));
            self.tree.process_event(event)?;
            if self.tree.depth() == 0 {
                return Ok(None); // </stream:stream>
            }
            if foot && self.tree.depth() == 1 {
                if let Some(el) = self.tree.unshift_child() {
                    return Ok(Some(el));
                }
            }
        }
    }

    pub async fn send(&mut self, el: &Element) -> Result<()> {
        let mut buf = Vec::with_capacity(512);
        el.write_to(&mut buf)?;
        self.writer.write_all(&buf).await?;
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.writer.write_all(b"</stream:stream>").await;
        let _ = self.writer.shutdown().await;
    }
}
