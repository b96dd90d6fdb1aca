//! The sandbox's integration tests: the API server driven by the real kubectl, by kube 5 and
//! by raw HTTP, its controllers, faults, authentication and a soak. (`meshplan sandbox serve`
//! itself is tested with the `meshplan` binary, in the product's tests.)

mod auth;
mod certmanager;
mod controllers;
mod faults;
mod http;
mod kube_client;
mod kubectl;
mod ownership;
mod podmonitor;
mod raw;
mod soak;
