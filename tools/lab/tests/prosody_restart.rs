//! The lab can stop Prosody and bring it back on the same ports (for tests of XMPP loss).

use anyhow::Result;
use gateway_lab::{net, paths, prosody::Prosody};
use std::net::TcpStream;

#[test]
fn prosody_comes_back_on_the_same_port_after_a_restart() -> Result<()> {
    let dir = paths::run_dir("prosody-restart")?;
    let mut p = Prosody::start(&dir)?;
    let port = p.c2s_port;
    p.stop();
    assert!(
        TcpStream::connect((net::LOOPBACK, port)).is_err(),
        "still listening after stop"
    );
    p.restart()?;
    assert_eq!(p.c2s_port, port);
    TcpStream::connect((net::LOOPBACK, port))?;
    let log = std::fs::read_to_string(dir.join("prosody.log"))?;
    assert!(log.contains("Activated service 'c2s'"), "{log}");
    Ok(())
}
