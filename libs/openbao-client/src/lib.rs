//! Typed async OpenBao client (being built: see the client issue).
