//! Which backups to delete. Pure: the Job lists, this decides.

use std::time::Duration;

use jiff::Timestamp;

use crate::layout::BackupName;

/// Keep the newest `keep_last` backups and/or those younger than `max_age`.
/// A backup survives if either rule keeps it; the newest good backup
/// always survives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: Option<usize>,
    pub max_age: Option<Duration>,
}

impl RetentionPolicy {
    pub fn is_unbounded(&self) -> bool {
        self.keep_last.is_none() && self.max_age.is_none()
    }
}

/// A good backup (one with a manifest) and when it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: BackupName,
    pub finished_at: Timestamp,
}

/// The backups to delete, oldest first.
pub fn expired(backups: &[Listed], policy: &RetentionPolicy, now: Timestamp) -> Vec<BackupName> {
    if policy.is_unbounded() || backups.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<&Listed> = backups.iter().collect();
    sorted.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.name.cmp(&a.name)));
    let mut doomed: Vec<BackupName> = sorted
        .iter()
        .enumerate()
        .skip(1) // the newest good backup is never deleted
        .filter(|(rank, backup)| {
            let kept_by_count = policy.keep_last.is_some_and(|n| *rank < n);
            let kept_by_age = policy
                .max_age
                .is_some_and(|age| now.duration_since(backup.finished_at).unsigned_abs() <= age);
            let only_count = policy.max_age.is_none();
            let only_age = policy.keep_last.is_none();
            let keep = match (only_count, only_age) {
                (true, _) => kept_by_count,
                (_, true) => kept_by_age,
                _ => kept_by_count || kept_by_age,
            };
            !keep
        })
        .map(|(_, backup)| backup.name.clone())
        .collect();
    doomed.reverse();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backups(hours_ago: &[i64], now: Timestamp) -> Vec<Listed> {
        hours_ago
            .iter()
            .map(|h| {
                let at = now - jiff::SignedDuration::from_hours(*h);
                Listed {
                    name: BackupName::new(at),
                    finished_at: at,
                }
            })
            .collect()
    }

    fn hours(names: &[BackupName], all: &[Listed], now: Timestamp) -> Vec<i64> {
        names
            .iter()
            .map(|n| {
                let b = all.iter().find(|b| &b.name == n).unwrap();
                now.duration_since(b.finished_at).as_hours()
            })
            .collect()
    }

    #[test]
    fn keep_last_deletes_the_oldest() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let all = backups(&[1, 2, 3, 4, 5], now);
        let policy = RetentionPolicy {
            keep_last: Some(2),
            max_age: None,
        };
        assert_eq!(hours(&expired(&all, &policy, now), &all, now), [5, 4, 3]);
    }

    #[test]
    fn max_age_deletes_old_ones_but_never_the_newest() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let all = backups(&[30, 50, 70], now);
        let policy = RetentionPolicy {
            keep_last: None,
            max_age: Some(Duration::from_secs(24 * 3600)),
        };
        // Every backup is older than a day, yet the newest one survives.
        assert_eq!(hours(&expired(&all, &policy, now), &all, now), [70, 50]);
    }

    #[test]
    fn either_rule_keeps_a_backup() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let all = backups(&[1, 2, 30, 40], now);
        let policy = RetentionPolicy {
            keep_last: Some(3),
            max_age: Some(Duration::from_secs(24 * 3600)),
        };
        assert_eq!(hours(&expired(&all, &policy, now), &all, now), [40]);
    }

    #[test]
    fn no_policy_or_no_backups_deletes_nothing() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        assert!(expired(&backups(&[1, 99], now), &RetentionPolicy::default(), now).is_empty());
        assert!(
            expired(
                &[],
                &RetentionPolicy {
                    keep_last: Some(0),
                    max_age: None
                },
                now
            )
            .is_empty()
        );
        // keep_last 0 still keeps the newest.
        let all = backups(&[1, 2], now);
        assert_eq!(
            expired(
                &all,
                &RetentionPolicy {
                    keep_last: Some(0),
                    max_age: None
                },
                now
            )
            .len(),
            1
        );
    }
}
