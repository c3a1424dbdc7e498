//! `comms-native`: the cd: wire codec, the `commsd` routing daemon and the native transport.
//!
//! **Status: not built yet.** This crate is filled by the "Native backend" issues; today it
//! exports nothing, and `comms::connect` refuses `cd:`, `cds:` and `cdu:` URLs with a clear error.
