//! Media: codecs, playout buffers, the mixer, the phone's RTP leg and the conference's WebRTC leg
//! (wrapping str0m and libopus). See `docs/dial-in.md` for the contract with `call`.

/// Installs str0m's process-wide DTLS crypto provider. Call once at start: without it every new
/// WebRTC session falls back to resolving the provider itself.
pub fn install_dtls_crypto() {
    str0m::crypto::from_feature_flags().install_process_default();
}
