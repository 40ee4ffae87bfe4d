//! The thread facade: `state::Backend` and `state::LockedState` are
//! synchronous, so each call on [`KubernetesBackend`] or [`KubernetesLock`]
//! is a [`Request`] to the backend's thread (`worker.rs`), and waits for
//! its answer.

use super::{KubernetesBackend, KubernetesLock, Location};
use state::{LockInfo, RemoteOp, State, StateError};
use std::sync::mpsc;
use std::time::Duration;

/// Where the thread sends a request's answer.
pub(super) type Reply<T> = mpsc::Sender<Result<T, StateError>>;

/// A call, as the backend's thread serves it.
pub(super) enum Request {
    Read(Reply<Option<State>>),
    /// The state, the serial it was read at, `--force`.
    Write(State, u64, bool, Reply<()>),
    /// The operation, how long to wait for a holder.
    Lock(String, Duration, Reply<LockInfo>),
    Unlock(Reply<()>),
    /// The lock ID.
    ForceUnlock(String, Reply<()>),
    MayStart(Reply<()>),
}

impl Request {
    /// What the request does, for the error when the thread is gone.
    fn op(&self) -> RemoteOp {
        match self {
            Request::Read(_) => RemoteOp::Read,
            Request::Write(..) => RemoteOp::Write,
            Request::Lock(..) | Request::MayStart(_) => RemoteOp::Lock,
            Request::Unlock(_) | Request::ForceUnlock(..) => RemoteOp::Unlock,
        }
    }
}

/// Sends a request to the backend's thread and waits for its answer.
fn ask<T>(
    tx: &tokio::sync::mpsc::UnboundedSender<Request>,
    location: &Location,
    make: impl FnOnce(Reply<T>) -> Request,
) -> Result<T, StateError> {
    let (reply, answer) = mpsc::channel();
    let request = make(reply);
    let op = request.op();
    let gone = || location.remote(op, "the state backend's thread stopped");
    tx.send(request).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

impl KubernetesBackend {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StateError> {
        ask(&self.tx, &self.location, make)
    }
}

impl state::Backend for KubernetesBackend {
    fn location(&self) -> String {
        self.location.describe()
    }

    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
    ) -> Result<Box<dyn state::LockedState>, StateError> {
        let info = self.ask(|r| Request::Lock(operation.to_string(), timeout, r))?;
        Ok(Box::new(KubernetesLock {
            tx: self.tx.clone(),
            location: self.location.clone(),
            info,
            read_serial: std::sync::Mutex::new(0),
        }))
    }

    fn read_unlocked(&self) -> Result<Option<State>, StateError> {
        self.ask(Request::Read)
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        self.ask(|r| Request::ForceUnlock(id.to_string(), r))
    }
}

impl KubernetesLock {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StateError> {
        ask(&self.tx, &self.location, make)
    }
}

impl state::LockedState for KubernetesLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let st = self.ask(Request::Read)?;
        *self.read_serial.lock().unwrap_or_else(|p| p.into_inner()) =
            st.as_ref().map_or(0, |s| s.serial);
        Ok(st)
    }

    fn write(&mut self, st: &mut State) -> Result<(), StateError> {
        let read_serial = *self.read_serial.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = st.clone();
        next.serial = st.next_serial().ok_or_else(|| {
            self.location.remote(
                RemoteOp::Write,
                format!(
                    "its serial {} is the largest a state may have (it was edited by hand?): {}",
                    st.serial,
                    state::SERIAL_RECOVERY
                ),
            )
        })?;
        next.format_version = state::FORMAT_VERSION;
        let serial = next.serial;
        self.ask(|r| Request::Write(next, read_serial, false, r))?;
        st.serial = serial;
        st.format_version = state::FORMAT_VERSION;
        *self.read_serial.lock().unwrap_or_else(|p| p.into_inner()) = serial;
        Ok(())
    }

    fn may_start(&self) -> Result<(), StateError> {
        self.ask(Request::MayStart)
    }

    fn push(&mut self, incoming: State, force: bool) -> Result<State, StateError> {
        let current = self.read()?;
        let serial = state::push_serial(&self.location.path(), current.as_ref(), &incoming, force)?;
        let mut next = incoming;
        next.serial = serial;
        next.format_version = state::FORMAT_VERSION;
        let read_serial = current.as_ref().map_or(0, |c| c.serial);
        self.ask(|r| Request::Write(next.clone(), read_serial, force, r))?;
        Ok(next)
    }
}

impl Drop for KubernetesLock {
    fn drop(&mut self) {
        let _ = self.ask(Request::Unlock);
    }
}
