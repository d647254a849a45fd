//! The maintenance commands: `kikaku-edge keys ...` (the keys kept in the
//! state store) and `kikaku-edge storage ...` (usage reconcile). Both fail
//! with a [`CliError`], which `main` prints and turns into exit code 1.

pub mod keys;
pub mod storage;

use std::path::PathBuf;

use kikaku_filters::StateError;

use crate::config::ConfigErrors;
use crate::storage::backend::BackendError;

/// Why a command did not do what it was asked.
#[derive(Debug)]
pub enum CliError {
    /// The config file does not load: every error with its YAML path.
    Config(PathBuf, ConfigErrors),
    /// The config loads but lacks what the command needs.
    Missing(&'static str),
    /// A gateway (this pid) is running on the embedded state the command
    /// would write.
    GatewayRunning(String),
    /// An argument the command cannot take, and why.
    Usage(String),
    /// Nothing (or more than one thing) matches what was given.
    NoMatch(String),
    /// The state store could not be opened or did not answer.
    State(StateError),
    /// The storage backend could not be reached or refused.
    Backend(BackendError),
    /// A part of the gateway the command starts (the embedded backend,
    /// storage) could not be set up.
    Setup(String),
    /// The command's own runtime could not start.
    Runtime(std::io::Error),
    /// A reconcile stopped part-way.
    Reconcile(crate::storage::reconcile::ReconcileError),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Config(path, errors) => write!(f, "{}:\n{errors}", path.display()),
            CliError::Missing(what) => write!(f, "the config has no {what}"),
            CliError::GatewayRunning(pid) => write!(
                f,
                "a gateway (pid {pid}) is running on this embedded state; stop it first, \
                 or manage keys live through its management API (/admin/v1/keys on the \
                 admin listener; see README, \"Managing a running gateway\")"
            ),
            CliError::Usage(why) | CliError::NoMatch(why) | CliError::Setup(why) => {
                f.write_str(why)
            }
            CliError::State(e) => write!(f, "state store: {e}"),
            CliError::Backend(e) => write!(f, "storage backend: {e}"),
            CliError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            CliError::Reconcile(e) => write!(f, "reconcile: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<StateError> for CliError {
    fn from(e: StateError) -> Self {
        CliError::State(e)
    }
}

impl From<BackendError> for CliError {
    fn from(e: BackendError) -> Self {
        CliError::Backend(e)
    }
}

impl From<crate::storage::reconcile::ReconcileError> for CliError {
    fn from(e: crate::storage::reconcile::ReconcileError) -> Self {
        CliError::Reconcile(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Runtime(e)
    }
}
