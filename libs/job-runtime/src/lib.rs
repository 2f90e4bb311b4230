//! What every operator Job binary (backup, restore, upgrade) shares:
//!
//! - [`ExitCode`] and [`JobError`]: documented exit codes, one per failure
//!   class, each error saying what to do;
//! - [`JobResult`]: the final machine-readable result line the controller
//!   reads from the Job (stdout and the termination-message file);
//! - [`logging`]: JSON logs on stderr;
//! - [`connection`]: OpenBao flags, login and active-node discovery;
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.

pub mod connection;
pub mod exit;
pub mod logging;
pub mod main_loop;
pub mod result;
pub mod shutdown;

pub use connection::{ActiveNode, OpenBaoArgs};
pub use exit::{ExitCode, JobError};
pub use main_loop::run_job;
pub use result::{JobResult, Outcome, RESULT_PREFIX, parse_args};
