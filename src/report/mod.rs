//! Renderings for people and machines; the engine never prints, it emits events and returns
//! data that these modules turn into text.
//!
//! - [`progress`]: apply / rollback / destroy progress (live view, plain lines, JSON lines).

pub mod progress;
