//! The scheduler: walks a DAG of units (one per node) with bounded parallelism.
//!
//! 1. A unit starts when every unit it depends on is done; independent units run at the same
//!    time. A unit is a list of groups run one after the other; the steps of a group run
//!    concurrently. Every step holds one permit of a semaphore of `parallelism` permits, so at
//!    most that many steps (writes and waits) run at once across the whole run.
//! 2. When a step fails, the run stops taking new work: no unit starts, no further group
//!    starts, a step that has not started yet does not start; in-flight steps finish. The same
//!    happens when the `stop` token is cancelled (first Ctrl-C).
//! 3. Nothing is `?`-ed out: the loop drains every running unit, marks units whose
//!    dependencies failed as skipped (naming the dependency), and units that never started
//!    because the run stopped as skipped too. The first failure is the root cause.
//!
//! 4. When every step of a group is done, the runner may finish the group as a whole
//!    ([`StepRunner::finish_group`], holding no permit): destroy waits there, through one watch
//!    per kind and namespace, until the group's deleted objects are gone.
//!
//! Forward apply, rollback and destroy all run through this scheduler; only their steps
//! differ ([`StepRunner`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Event, Reporter};

/// One node's work.
pub(crate) struct Unit<S> {
    pub name: String,
    /// Indices of units that must be done first.
    pub deps: Vec<usize>,
    /// Run one after the other; the steps of a group concurrently.
    pub groups: Vec<Vec<S>>,
    /// Upper bound for the whole unit.
    pub timeout: Option<Duration>,
}

/// How a unit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitEnd {
    Done,
    /// A step failed (its message).
    Failed(String),
    /// Started, then stopped before its end because the run stopped.
    Stopped,
    /// Never started (why).
    Skipped(String),
}

/// Runs the steps of one kind of run.
pub(crate) trait StepRunner<S>: Sync {
    /// Runs one step of `unit` within `deadline`; the error message on failure.
    fn run_step<'a>(
        &'a self,
        unit: &'a str,
        step: &'a S,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Prepares a group before its steps start, holding no permit (nothing by default).
    /// Cannot fail: whatever it could not prepare, the steps do themselves.
    fn start_group<'a>(&'a self, _unit: &'a str, _steps: &'a [S]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Finishes a group whose steps are all done, before the next group starts (nothing by
    /// default); the error message on failure.
    fn finish_group<'a>(
        &'a self,
        _unit: &'a str,
        _steps: &'a [S],
        _deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Settings of one scheduling.
pub(crate) struct Schedule<'a> {
    pub parallelism: usize,
    /// Cancelled by a failure (when `stop_on_failure`) or from outside (first Ctrl-C).
    pub stop: CancellationToken,
    pub stop_on_failure: bool,
    /// The overall deadline.
    pub deadline: Option<Instant>,
    pub reporter: &'a dyn Reporter,
}

enum StepEnd {
    Done,
    Failed(String),
    NotStarted,
}

impl Schedule<'_> {
    /// Runs every unit; the end of each, by index.
    pub(super) async fn run<S: Sync>(
        &self,
        units: &[Unit<S>],
        runner: &dyn StepRunner<S>,
    ) -> Vec<UnitEnd> {
        let semaphore = Arc::new(Semaphore::new(self.parallelism.max(1)));
        let mut ends: Vec<Option<UnitEnd>> = vec![None; units.len()];
        let mut started = vec![false; units.len()];
        let mut running = FuturesUnordered::new();
        loop {
            // Settle what can be settled, start what can be started.
            let mut changed = true;
            while changed {
                changed = false;
                for i in 0..units.len() {
                    if started[i] || ends[i].is_some() {
                        continue;
                    }
                    let blocked = units[i].deps.iter().find_map(|&d| match ends.get(d) {
                        Some(Some(UnitEnd::Done)) => None,
                        Some(Some(UnitEnd::Failed(_))) => {
                            Some(Some(format!("{} failed", units[d].name)))
                        }
                        Some(Some(UnitEnd::Stopped)) => {
                            Some(Some(format!("{} was stopped", units[d].name)))
                        }
                        Some(Some(UnitEnd::Skipped(_))) => {
                            Some(Some(format!("{} was skipped", units[d].name)))
                        }
                        Some(None) => Some(None),
                        None => None,
                    });
                    match blocked {
                        Some(Some(reason)) => {
                            let reason = format!("dependency {reason}");
                            self.reporter.event(&Event::NodeSkipped {
                                node: units[i].name.clone(),
                                reason: reason.clone(),
                            });
                            ends[i] = Some(UnitEnd::Skipped(reason));
                            changed = true;
                        }
                        Some(None) => {}
                        None if self.stop.is_cancelled() => {
                            let reason = "the run stopped before it started".to_owned();
                            self.reporter.event(&Event::NodeSkipped {
                                node: units[i].name.clone(),
                                reason: reason.clone(),
                            });
                            ends[i] = Some(UnitEnd::Skipped(reason));
                            changed = true;
                        }
                        None => {
                            started[i] = true;
                            let unit = &units[i];
                            let semaphore = semaphore.clone();
                            running.push(async move {
                                (i, self.run_unit(unit, runner, &semaphore).await)
                            });
                        }
                    }
                }
            }
            match running.next().await {
                Some((i, end)) => ends[i] = Some(end),
                None => break,
            }
        }
        ends.into_iter()
            .map(|e| e.unwrap_or_else(|| UnitEnd::Skipped("a dependency cycle".to_owned())))
            .collect()
    }

    async fn run_unit<S: Sync>(
        &self,
        unit: &Unit<S>,
        runner: &dyn StepRunner<S>,
        semaphore: &Semaphore,
    ) -> UnitEnd {
        self.reporter.event(&Event::NodeStarted {
            node: unit.name.clone(),
        });
        let deadline = match (unit.timeout.map(|t| Instant::now() + t), self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for group in &unit.groups {
            if self.stop.is_cancelled() {
                return UnitEnd::Stopped;
            }
            runner.start_group(&unit.name, group).await;
            let steps = group.iter().map(|step| async move {
                let Ok(_permit) = semaphore.acquire().await else {
                    return StepEnd::NotStarted;
                };
                if self.stop.is_cancelled() {
                    return StepEnd::NotStarted;
                }
                match runner.run_step(&unit.name, step, deadline).await {
                    Ok(()) => StepEnd::Done,
                    Err(message) => {
                        if self.stop_on_failure {
                            self.stop.cancel();
                        }
                        StepEnd::Failed(message)
                    }
                }
            });
            let ends = futures::future::join_all(steps).await;
            if let Some(message) = ends.iter().find_map(|e| match e {
                StepEnd::Failed(m) => Some(m.clone()),
                _ => None,
            }) {
                self.reporter.event(&Event::NodeFailed {
                    node: unit.name.clone(),
                    message: message.clone(),
                });
                return UnitEnd::Failed(message);
            }
            if ends.iter().any(|e| matches!(e, StepEnd::NotStarted)) {
                return UnitEnd::Stopped;
            }
            if let Err(message) = runner.finish_group(&unit.name, group, deadline).await {
                if self.stop_on_failure {
                    self.stop.cancel();
                }
                self.reporter.event(&Event::NodeFailed {
                    node: unit.name.clone(),
                    message: message.clone(),
                });
                return UnitEnd::Failed(message);
            }
        }
        self.reporter.event(&Event::NodeDone {
            node: unit.name.clone(),
        });
        UnitEnd::Done
    }
}

/// Indices of `names` from dependency names; unknown names are ignored.
pub(crate) fn indices(names: &[String]) -> BTreeMap<&str, usize> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect()
}

/// Units in a cycle (their names, sorted), if any.
pub(crate) fn find_cycle<S>(units: &[Unit<S>]) -> Option<Vec<String>> {
    let mut done = vec![false; units.len()];
    let mut progress = true;
    while progress {
        progress = false;
        for i in 0..units.len() {
            if !done[i]
                && units[i]
                    .deps
                    .iter()
                    .all(|&d| done.get(d).copied().unwrap_or(true))
            {
                done[i] = true;
                progress = true;
            }
        }
    }
    let mut left: Vec<String> = units
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(u, _)| u.name.clone())
        .collect();
    left.sort();
    (!left.is_empty()).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::events::RecordingReporter;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Runner {
        log: Mutex<Vec<String>>,
        running: AtomicUsize,
        peak: AtomicUsize,
        fail: &'static str,
    }

    impl StepRunner<&'static str> for Runner {
        fn run_step<'a>(
            &'a self,
            _unit: &'a str,
            step: &'a &'static str,
            _deadline: Option<Instant>,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                self.log.lock().unwrap().push((*step).to_owned());
                if *step == self.fail {
                    Err(format!("{step} broke"))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn unit(name: &str, deps: Vec<usize>, groups: Vec<Vec<&'static str>>) -> Unit<&'static str> {
        Unit {
            name: name.to_owned(),
            deps,
            groups,
            timeout: None,
        }
    }

    #[tokio::test]
    async fn failures_skip_dependents_and_stop_new_work() {
        let units = vec![
            unit("a", vec![], vec![vec!["a1"], vec!["a2"]]),
            unit("b", vec![0], vec![vec!["b1"]]),
            unit("c", vec![1], vec![vec!["c1"]]),
        ];
        let runner = Runner {
            log: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            fail: "a1",
        };
        let reporter = RecordingReporter::new();
        let schedule = Schedule {
            parallelism: 4,
            stop: CancellationToken::new(),
            stop_on_failure: true,
            deadline: None,
            reporter: &reporter,
        };
        let ends = schedule.run(&units, &runner).await;
        assert_eq!(ends[0], UnitEnd::Failed("a1 broke".into()));
        assert_eq!(ends[1], UnitEnd::Skipped("dependency a failed".into()));
        assert_eq!(ends[2], UnitEnd::Skipped("dependency b was skipped".into()));
        assert_eq!(*runner.log.lock().unwrap(), vec!["a1"]);
    }

    #[tokio::test]
    async fn parallelism_is_bounded_and_groups_are_ordered() {
        let units = vec![
            unit("a", vec![], vec![vec!["a1", "a2", "a3"], vec!["a4"]]),
            unit("b", vec![], vec![vec!["b1", "b2", "b3"]]),
        ];
        let runner = Runner {
            log: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            fail: "",
        };
        let reporter = RecordingReporter::new();
        let schedule = Schedule {
            parallelism: 2,
            stop: CancellationToken::new(),
            stop_on_failure: true,
            deadline: None,
            reporter: &reporter,
        };
        let ends = schedule.run(&units, &runner).await;
        assert!(ends.iter().all(|e| *e == UnitEnd::Done));
        assert_eq!(runner.peak.load(Ordering::SeqCst), 2);
        let log = runner.log.lock().unwrap();
        let pos = |s: &str| log.iter().position(|x| x == s).unwrap();
        assert!(pos("a4") > pos("a1") && pos("a4") > pos("a2") && pos("a4") > pos("a3"));
    }

    #[test]
    fn cycles_are_found() {
        let units = vec![
            unit("a", vec![1], vec![]),
            unit("b", vec![0], vec![]),
            unit("c", vec![], vec![]),
        ];
        assert_eq!(
            find_cycle(&units),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(find_cycle(&units[2..]), None);
    }
}
