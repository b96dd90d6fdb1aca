//! The one integration test binary: a module per command or subsystem.
mod cluster;
mod sandbox;
mod state;
