//! str0m's DTLS provider with the DTLS configuration built once per process.
//!
//! str0m's aws-lc-rs provider builds a new dimpl configuration for every WebRTC session, and
//! dimpl validates its crypto provider with known-answer tests on every build (hashes, PRF,
//! signatures and a key exchange on each curve, P-384 included): about 2 ms of CPU on the path
//! from Jicofo's offer to the phone's 200 OK, the same work for every call. Here the configuration
//! (and so that validation) is made once and shared; each session still gets its own DTLS state,
//! keys and randomness.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The process's crypto provider for str0m: the compiled-in one, with [`SharedConfigDtls`] for
/// DTLS.
pub(super) fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = str0m::crypto::from_feature_flags();
            provider.dtls_provider = DTLS.get_or_init(|| SharedConfigDtls {
                inner: provider.dtls_provider,
                config: OnceLock::new(),
            });
            Arc::new(provider)
        })
        .clone()
}

static DTLS: OnceLock<SharedConfigDtls> = OnceLock::new();

/// The MTU the shared configuration was made for; `None` before the first session.
#[cfg(test)]
fn configured_mtu() -> Option<Option<usize>> {
    Some(DTLS.get()?.config.get()?.0)
}

/// Creates DTLS sessions from one shared dimpl configuration; certificates come from the
/// compiled-in provider.
#[derive(Debug)]
pub(super) struct SharedConfigDtls {
    inner: &'static dyn DtlsProvider,
    /// Built on first use, for the MTU str0m asks for (the same for every session).
    config: OnceLock<(Option<usize>, Arc<dimpl::Config>)>,
}

fn build_config(mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
    // ICE has already checked that the peer can receive at its address, so DTLS cookies would
    // only add a round trip (as str0m's own provider does).
    let mut builder = dimpl::Config::builder().use_server_cookie(false);
    if let Some(mtu) = mtu {
        builder = builder.mtu(mtu);
    }
    builder
        .build()
        .map(Arc::new)
        .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = match self.config.get() {
            Some((cached_mtu, config)) if *cached_mtu == mtu => config.clone(),
            Some(_) => build_config(mtu)?,
            None => {
                let config = build_config(mtu)?;
                let _ = self.config.set((mtu, config.clone()));
                config
            }
        };
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )))
            }
        };
        Ok(Box::new(Session(dtls)))
    }
}

/// One call's DTLS state.
struct Session(dimpl::Dtls);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dtls::Session")
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_share_one_configuration() {
        let provider = crypto_provider();
        let cert = provider.dtls_provider.generate_certificate().unwrap();
        let now = Instant::now();
        let a = provider
            .dtls_provider
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        let b = provider
            .dtls_provider
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        assert!(!a.is_active() && !b.is_active());
        assert!(Arc::ptr_eq(&provider, &crypto_provider()));
    }

    #[test]
    fn the_warm_up_at_start_makes_the_configuration() {
        let identity = crate::media::DtlsIdentity::generate().unwrap();
        identity.warm_up();
        assert!(configured_mtu().is_some());
    }

    #[test]
    fn a_session_with_another_mtu_gets_its_own_configuration() {
        let provider = crypto_provider();
        let cert = provider.dtls_provider.generate_certificate().unwrap();
        for mtu in [None, Some(1150), Some(1400)] {
            let dtls =
                provider
                    .dtls_provider
                    .new_dtls(&cert, Instant::now(), DtlsVersion::Dtls12, mtu);
            assert!(dtls.is_ok(), "mtu {mtu:?}");
        }
    }
}
