//! The controller's pure core: everything that can be decided without a
//! client. The async shell (watch, apply, status) is a later step.

pub mod render;
