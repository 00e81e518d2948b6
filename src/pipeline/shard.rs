//! Splitting one batch over several machines for cluster schedulers (Slurm array jobs, Kubernetes
//! Indexed Jobs, GNU parallel): shard `i` of `n` takes a contiguous, equal share of a list in its
//! stable order, so the shards' outputs are disjoint and their union is the single-machine run.

use crate::error::{Error, Result};
use std::ops::Range;

/// Shard `index` of `count` (`0 <= index < count`), as Kubernetes' `JOB_COMPLETION_INDEX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Environment variables read by [`Shard::from_env`], in order of preference: (index, count).
/// Slurm numbers array tasks from `SLURM_ARRAY_TASK_MIN`, which is subtracted.
pub const ENV_INDEX: &[&str] = &["SUPERRES_SHARD_INDEX", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];
pub const ENV_COUNT: &[&str] = &["SUPERRES_SHARD_COUNT", "SLURM_ARRAY_TASK_COUNT"];

impl Shard {
    /// The whole batch on one machine.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Usage(format!(
                "shard {index}/{count}: the index must be 0 to {} (i/n counts from 0, as JOB_COMPLETION_INDEX)",
                count.saturating_sub(1)
            )));
        }
        Ok(Shard { index, count })
    }

    /// `i/n`, as `--shard` takes it.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Usage(format!("--shard '{s}': expected i/n with 0 <= i < n, e.g. 0/4"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(i, n)
    }

    /// From a scheduler's variables (see [`ENV_INDEX`], [`ENV_COUNT`]), read through `get` so
    /// tests need not touch the process environment. Kubernetes does not export the job's
    /// completion count: set `SUPERRES_SHARD_COUNT` in the pod spec.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let num = |name: &str| -> Result<Option<usize>> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Usage(format!("--shard-from-env: {name}='{v}' is not a non-negative integer"))
                }),
            }
        };
        let mut index = None;
        for name in ENV_INDEX {
            if let Some(v) = num(name)? {
                let base = if *name == "SLURM_ARRAY_TASK_ID" {
                    num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0)
                } else {
                    0
                };
                index = Some(v.checked_sub(base).ok_or_else(|| {
                    Error::Usage(format!(
                        "--shard-from-env: SLURM_ARRAY_TASK_ID {v} is below SLURM_ARRAY_TASK_MIN {base}"
                    ))
                })?);
                break;
            }
        }
        let mut count = None;
        for name in ENV_COUNT {
            if let Some(v) = num(name)? {
                count = Some(v);
                break;
            }
        }
        match (index, count) {
            (Some(i), Some(n)) => Shard::new(i, n),
            (None, _) => Err(Error::Usage(format!(
                "--shard-from-env: none of {} is set",
                ENV_INDEX.join(", ")
            ))),
            (_, None) => Err(Error::Usage(format!(
                "--shard-from-env: the shard count is unknown: set one of {} (Kubernetes: SUPERRES_SHARD_COUNT = completions)",
                ENV_COUNT.join(", ")
            ))),
        }
    }

    /// [`Shard::from_vars`] on the process environment.
    pub fn from_env() -> Result<Shard> {
        Shard::from_vars(|k| std::env::var(k).ok())
    }

    /// This shard's part of `0..len`: contiguous, and the parts of all shards tile `0..len` in
    /// order with sizes differing by at most one.
    pub fn range(&self, len: usize) -> Range<usize> {
        let at = |k: usize| ((k as u128 * len as u128) / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// This shard's items of a list in its stable order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        let r = self.range(items.len());
        items.into_iter().skip(r.start).take(r.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Shard::parse("0/1").unwrap(), Shard::ALL);
        assert_eq!(Shard::parse("3/4").unwrap(), Shard { index: 3, count: 4 });
        for bad in ["4/4", "1/0", "-1/4", "a/4", "1", "1/2/3", ""] {
            assert!(matches!(Shard::parse(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn reads_scheduler_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "2"), ("SUPERRES_SHARD_COUNT", "5")]);
        assert_eq!(Shard::from_vars(k8s).unwrap(), Shard { index: 2, count: 5 });
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "11"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(Shard::from_vars(slurm).unwrap(), Shard { index: 1, count: 3 });
        assert!(Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "0")])).is_err(), "count missing");
        assert!(Shard::from_vars(vars(&[])).is_err());
        assert!(
            Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "x"), ("SUPERRES_SHARD_COUNT", "2")])).is_err()
        );
        assert!(
            Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "2"), ("SUPERRES_SHARD_COUNT", "2")])).is_err()
        );
    }

    proptest! {
        #[test]
        fn shards_tile_the_list_in_order(len in 0usize..500, count in 1usize..40) {
            let mut next = 0;
            for index in 0..count {
                let r = Shard { index, count }.range(len);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() == len / count || r.len() == len / count + 1);
                next = r.end;
            }
            prop_assert_eq!(next, len);
            let all: Vec<usize> = (0..count).flat_map(|i| Shard { index: i, count }.select((0..len).collect())).collect();
            prop_assert_eq!(all, (0..len).collect::<Vec<_>>());
        }
    }
}
