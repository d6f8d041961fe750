//! Dial plan: rules from `dialplans/*.toml` mapping a dialled number to a room, a PIN IVR, or a
//! rejection.
