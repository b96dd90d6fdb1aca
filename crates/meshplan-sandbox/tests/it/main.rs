//! The sandbox's integration tests: the API server driven by the real kubectl, by kube 5 and
//! by raw HTTP, its controllers, faults, authentication and a soak. (`meshplan sandbox serve`
//! itself is tested with the `meshplan` binary, in the product's tests.)

// A test binary: its `pub` items are for its own modules, and tests may print what they saw.
#![allow(unreachable_pub, clippy::print_stdout, clippy::print_stderr)]

mod auth;
mod certmanager;
mod controllers;
mod faults;
mod http;
mod kube_client;
mod kubectl;
mod leases;
mod limits;
mod ownership;
mod podmonitor;
mod raw;
mod soak;
