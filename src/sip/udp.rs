//! The UDP socket under rsipstack's UDP transport, with the [`screen`] in front: every
//! datagram is screened before the stack reads it, and what the screen answers itself never
//! reaches the stack.

use std::net::SocketAddr;

use rsipstack::platform::net::UdpSocket as StackUdpSocket;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tracing::debug;

use super::screen::{screen, Screened};

pub(crate) struct ScreenedUdp {
    socket: UdpSocket,
    /// Large enough for any datagram, so an oversized one is seen whole and answered 513.
    scratch: Mutex<Box<[u8]>>,
}

impl ScreenedUdp {
    pub(crate) fn new(socket: UdpSocket) -> Self {
        ScreenedUdp {
            socket,
            scratch: Mutex::new(vec![0; 65536].into_boxed_slice()),
        }
    }
}

#[async_trait::async_trait]
impl StackUdpSocket for ScreenedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let mut scratch = self.scratch.lock().await;
        loop {
            let (len, from) = self.socket.recv_from(&mut scratch).await?;
            match screen(&scratch[..len], buf.len()) {
                Screened::Forward(bytes) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    return Ok((bytes.len(), from));
                }
                Screened::Answer(response) => {
                    let text = String::from_utf8_lossy(&response);
                    let status = text.lines().next().unwrap_or("");
                    debug!(%from, status, "answered a request the stack is not given");
                    if let Err(e) = self.socket.send_to(&response, from).await {
                        debug!(%from, error = %e, "answer not sent");
                    }
                }
                Screened::Ignore => debug!(%from, len, "ignored a datagram that is not SIP"),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}
