//! Whether a process the code under test killed is gone, without polling: a kill signal is
//! delivered at once, but the process exits when the kernel next schedules it, which on a busy
//! machine can be after the code under test has returned. A pidfd becomes readable when its
//! process exits, so a test can wait for exactly that.

use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// How long a killed process may take to exit before the test calls it alive.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// True when `pid` has exited (or is a zombie waiting to be reaped) within [`EXIT_WITHIN`].
pub fn exits(pid: u32) -> bool {
    exited_within(pid, EXIT_WITHIN)
}

/// Asserts that every one of `pids` [`exits`].
#[track_caller]
pub fn assert_exit(pids: impl IntoIterator<Item = u32>) {
    for pid in pids {
        assert!(exits(pid), "process {pid} is still alive");
    }
}

/// True when `pid` is running now (it has not exited), without waiting.
pub fn running(pid: u32) -> bool {
    !exited_within(pid, Duration::ZERO)
}

fn exited_within(pid: u32, within: Duration) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        // ESRCH: no such process any more (reaped).
        Err(_) => return true,
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: within.as_secs() as i64,
        tv_nsec: i64::from(within.subsec_nanos()),
    };
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}
