//! Shutdown signals: the first SIGINT/SIGTERM starts a graceful stop, a second one exits at once
//! (exit 130), killing running python scripts and what they started on the way out. SIGHUP
//! reloads the config ([`hangups`]).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit code for a stop forced by a second signal (128 + SIGINT, as shells do).
pub const FORCED_EXIT: i32 = 130;

/// Returns a token cancelled by the first SIGINT or SIGTERM; a second signal ends the process.
pub fn install() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let first = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "Shutting down gracefully; send the signal again to stop at once."
        );
        first.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Scripts would outlive an `exit` (their parent-death signal reaches only the script,
        // not what it started): kill their whole process groups first.
        let scripts = crate::endpoints::python::kill_running_scripts();
        tracing::warn!(signal = name, scripts, "Second signal: stopping at once.");
        std::process::exit(FORCED_EXIT);
    });
    Ok(token)
}

/// SIGHUP, the operator's "reload the config" (see [`super::reload`]). Installed at start, so a
/// SIGHUP never kills procos (the default action) even before the reloader listens.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
}
