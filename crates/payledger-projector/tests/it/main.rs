//! The projector runtime and the process-manager runtime against a real PostgreSQL.

mod process;
mod process_chains;
mod tail;
