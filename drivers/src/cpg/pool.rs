//! The bounded worker pool of the cpg responder: local libvirt actions for other members'
//! requests run on at most `workers` threads at once; more wait in a queue of at most `queued`
//! jobs, so a burst of requests is served in turn instead of being refused, and a flood is
//! refused instead of growing memory or threads without bound.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// Why a job was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("{0} local actions are waiting already")]
    Full(usize),
    /// No thread could be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(#[from] std::io::Error),
}

struct State {
    running: usize,
    queue: VecDeque<Task>,
}

/// A pool of at most `workers` threads, started on demand, with a queue of at most `queued`
/// jobs.
pub struct Pool {
    workers: usize,
    queued: usize,
    state: Arc<Mutex<State>>,
}

impl Pool {
    /// An empty pool.
    pub fn new(workers: usize, queued: usize) -> Pool {
        Pool {
            workers: workers.max(1),
            queued,
            state: Arc::new(Mutex::new(State {
                running: 0,
                queue: VecDeque::new(),
            })),
        }
    }

    /// Run `task` on a free worker (started for it), or queue it for the next one to finish.
    pub fn submit(&self, task: impl FnOnce() + Send + 'static) -> Result<(), PoolError> {
        let task: Task = Box::new(task);
        {
            let mut st = self.state.lock();
            if st.running >= self.workers {
                if st.queue.len() >= self.queued {
                    return Err(PoolError::Full(st.queue.len()));
                }
                st.queue.push_back(task);
                return Ok(());
            }
            st.running += 1;
        }
        let state = self.state.clone();
        let spawned = std::thread::Builder::new()
            .name("cpg-job".into())
            .spawn(move || {
                let mut next = Some(task);
                while let Some(task) = next {
                    task();
                    // The next waiting job, or leave: under the lock, so a job queued
                    // meanwhile is either taken here or finds the worker count lowered.
                    let mut st = state.lock();
                    next = st.queue.pop_front();
                    if next.is_none() {
                        st.running -= 1;
                    }
                }
            });
        if let Err(e) = spawned {
            self.state.lock().running -= 1;
            return Err(PoolError::Spawn(e));
        }
        Ok(())
    }

    /// Jobs running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.running, st.queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_burst_waits_for_free_workers_and_a_flood_is_refused() {
        let pool = Pool::new(2, 3);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate_rx));
        let (done_tx, done_rx) = mpsc::channel::<usize>();
        for i in 0..5 {
            let gate = gate.clone();
            let done = done_tx.clone();
            pool.submit(move || {
                let _ = gate.lock().unwrap().recv();
                let _ = done.send(i);
            })
            .unwrap();
        }
        assert_eq!(pool.load(), (2, 3), "two run, three wait");
        assert!(matches!(pool.submit(|| {}), Err(PoolError::Full(3))));
        for _ in 0..5 {
            gate_tx.send(()).unwrap();
        }
        let mut got: Vec<usize> = (0..5)
            .map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4], "every queued job ran");
        // The workers leave once the queue is empty; new jobs start workers again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.load() != (0, 0) {
            assert!(std::time::Instant::now() < deadline, "{:?}", pool.load());
            std::thread::sleep(Duration::from_millis(5));
        }
        let (tx, rx) = mpsc::channel();
        pool.submit(move || tx.send(7).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
    }
}
